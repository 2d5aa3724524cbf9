"""The ``faasbox`` command line (typer): one module per command group.

Commands talk to a server at ``FAASBOX_ENDPOINT`` (or ``--endpoint``) through
:class:`faasbox.remote.RemoteClient`; ``up`` and ``doctor`` run locally.
"""
