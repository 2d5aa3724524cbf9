"""The public surface is small, typed and import-light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import faasbox


def test_all_names_the_public_surface() -> None:
    assert sorted(faasbox.__all__) == ["Client", "connect", "local"]
    for name in ("connect", "local"):
        assert callable(getattr(faasbox, name))
    from faasbox import Client
    from faasbox.platform import LocalClient
    from faasbox.remote import RemoteClient

    assert issubclass(LocalClient, Client) and issubclass(RemoteClient, Client)


def test_package_ships_py_typed() -> None:
    assert (Path(faasbox.__file__).parent / "py.typed").is_file()


def test_importing_faasbox_loads_no_control_plane() -> None:
    code = (
        "import sys, faasbox; heavy = {'sqlalchemy', 'fastapi', 'uvicorn', 'httpx'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sandbox_runtime_imports_only_the_standard_library() -> None:
    runtime = Path(faasbox.__file__).parent / "runtime"
    for module in ("worker.py", "protocol.py", "zygote.py"):
        source = (runtime / module).read_text()
        assert "import faasbox" not in source and "from faasbox" not in source, module
