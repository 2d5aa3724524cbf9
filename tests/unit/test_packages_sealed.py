"""Stored packages are read-only for ordinary users and still removable by us."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from faasbox.registry.packages import remove_tree, seal


def test_seal_makes_a_tree_read_only_and_remove_tree_still_removes_it(tmp_path: Path) -> None:
    root = tmp_path / "code"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    tool = root / "run.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    seal(root)
    assert stat.S_IMODE(os.stat(root / "pkg" / "mod.py").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(tool).st_mode) == 0o555
    assert stat.S_IMODE(os.stat(root / "pkg").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o555
    remove_tree(tmp_path / "code")
    assert not root.exists()
