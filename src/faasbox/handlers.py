"""What function code running in a faasbox sandbox may use besides the stdlib.

Sandboxes start without site-packages, so the control plane's libraries are out of
reach; the platform appends ``<home>/runtime-lib`` (a link to this package) to every
sandbox's ``sys.path``, last, so that the stdlib-only modules of faasbox can be
imported -- this one and the folder object store::

    from faasbox.handlers import objects

    def handler(event, context):
        info, data = objects().get("incoming", "report.txt")
        objects().put("results", "report.json", b'{"pages": 3}')

Writes through ``objects()`` are the platform's own: with the folder store they go into
the same index as the control plane's, so bucket notifications fire for them too.
"""

from __future__ import annotations

import os
import threading

from faasbox.errors import ServiceUnavailableError
from faasbox.stores.objects import ObjectStore

_lock = threading.Lock()
_opened: dict[int, ObjectStore] = {}


def objects() -> ObjectStore:
    """This platform's object store (opened once per process, then reused across
    invocations of a warm sandbox).

    ``FAASBOX_OBJECT_STORE=folder`` (the default) opens the folder store at
    ``FAASBOX_OBJECTS_DIR`` directly: no HTTP round trip per object. ``s3`` opens the
    S3 adapter at ``FAASBOX_S3_ENDPOINT_URL``; it needs ``boto3`` in the function's
    requirements, and writes made this way are not seen by bucket notifications (only
    the control plane's own journal feeds those). Raises ServiceUnavailableError outside
    a sandbox when the variables are missing.
    """
    pid = os.getpid()
    store = _opened.get(pid)
    if store is not None:
        return store
    with _lock:
        store = _opened.get(pid)
        if store is None:
            store = _open()
            _opened.clear()  # a forked child must not reuse its parent's connections
            _opened[pid] = store
        return store


def _open() -> ObjectStore:
    kind = os.environ.get("FAASBOX_OBJECT_STORE", "folder")
    if kind == "folder":
        root = os.environ.get("FAASBOX_OBJECTS_DIR")
        if not root:
            raise ServiceUnavailableError(
                "FAASBOX_OBJECTS_DIR is not set: objects() works inside a faasbox sandbox "
                "(or set it to the platform's objects folder)"
            )
        from faasbox.stores.folder import FolderStore

        # The control plane sweeps orphan blobs; a sandbox opening the store must not.
        return FolderStore(root, sweep=False)
    if kind == "s3":
        import tempfile

        from faasbox.stores.s3 import S3Store

        return S3Store(
            os.path.join(tempfile.gettempdir(), "faasbox-s3-journal"),
            endpoint_url=os.environ.get("FAASBOX_S3_ENDPOINT_URL") or None,
            region=os.environ.get("AWS_REGION", "us-east-1"),
            bucket_prefix=os.environ.get("FAASBOX_S3_BUCKET_PREFIX", ""),
        )
    raise ServiceUnavailableError(f"FAASBOX_OBJECT_STORE={kind!r}: expected folder or s3")
