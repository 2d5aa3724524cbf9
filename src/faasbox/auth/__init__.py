"""Authentication: access keys and AWS Signature Version 4 (:mod:`keys`,
:mod:`sigv4`). Temporary credentials, policies and execution roles come next."""
