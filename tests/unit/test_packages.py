"""Deployment packages: safe extraction, limits, content addressing, precompilation."""

from __future__ import annotations

import io
import os
import stat
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from faasbox.config import Limits
from faasbox.errors import InvalidPackageError
from faasbox.layout import Layout
from faasbox.registry.packages import Package, PackageStore

SMALL = Limits(zip_bytes=1000, unzipped_bytes=10_000, package_entries=5)


def make_zip(*entries: tuple[str, bytes] | zipfile.ZipInfo | tuple[zipfile.ZipInfo, bytes],
             compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for entry in entries:
            if isinstance(entry, zipfile.ZipInfo):
                zf.writestr(entry, b"")
            else:
                name, data = entry
                zf.writestr(name, data)
    return buf.getvalue()


def symlink_entry(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info, target.encode()


def file_entry(name: str, data: bytes, mode: int = 0o644) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info, data


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "home").ensure()


@pytest.fixture
def store(layout: Layout) -> PackageStore:
    return PackageStore(layout, Limits())


@pytest.fixture
def code(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    (folder / "lib").mkdir(parents=True)
    (folder / "app.py").write_text("def handler(event, context):\n    return 'hi'\n")
    (folder / "lib" / "__init__.py").write_text("")
    (folder / "lib" / "util.py").write_text("X = 1\n")
    (folder / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (folder / "run.sh").chmod(0o755)
    return folder


def zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()


def assert_clean(layout: Layout) -> None:
    assert list(layout.staging.iterdir()) == []
    assert list(layout.packages.iterdir()) == []


def refused(store: PackageStore, layout: Layout, data: bytes, *words: str) -> str:
    with pytest.raises(InvalidPackageError) as info:
        store.ingest_zip(data)
    message = str(info.value)
    for word in words:
        assert word in message
    assert_clean(layout)
    return message


# --- storing and content addressing ------------------------------------------------


def test_folder_is_stored_and_precompiled(store: PackageStore, code: Path) -> None:
    pkg = store.ingest(code)
    assert isinstance(pkg, Package)
    assert pkg.path == store.path(pkg.sha256) and store.exists(pkg.sha256)
    assert pkg.files == 4 and pkg.requirements is None
    assert pkg.size_bytes == sum(p.stat().st_size for p in code.rglob("*") if p.is_file())
    assert (pkg.path / "app.py").read_text().startswith("def handler")
    assert os.access(pkg.path / "run.sh", os.X_OK)
    pycs = list((pkg.path / "__pycache__").glob("app.*.pyc"))
    assert len(pycs) == 1
    assert list((pkg.path / "lib" / "__pycache__").glob("util.*.pyc"))
    assert str(pkg.path / "app.py").encode() in pycs[0].read_bytes()  # ddir: stored path


def test_folder_and_its_zip_have_the_same_sha(store: PackageStore, code: Path,
                                              tmp_path: Path, layout: Layout) -> None:
    from_folder = store.ingest(code)
    data = zip_folder(code)
    from_bytes = store.ingest_zip(data)
    (tmp_path / "code.zip").write_bytes(data)
    from_file = store.ingest(tmp_path / "code.zip")
    assert from_folder.sha256 == from_bytes.sha256 == from_file.sha256
    assert from_folder == from_bytes == from_file
    assert [p.name for p in layout.packages.iterdir()] == [from_folder.sha256]
    assert list(layout.staging.iterdir()) == []


def test_content_changes_change_the_sha(store: PackageStore, code: Path) -> None:
    first = store.ingest(code).sha256
    (code / "run.sh").chmod(0o644)
    second = store.ingest(code).sha256
    (code / "lib" / "util.py").write_text("X = 2\n")
    third = store.ingest(code).sha256
    (code / "empty").mkdir()
    fourth = store.ingest(code).sha256
    assert len({first, second, third, fourth}) == 4


def test_ingest_twice_reuses_the_stored_copy(store: PackageStore, code: Path) -> None:
    first = store.ingest(code)
    marker = first.path / "app.py"
    inode = marker.stat().st_ino
    second = store.ingest(code)
    assert second == first and marker.stat().st_ino == inode


def test_pycache_and_pyc_in_input_are_ignored(store: PackageStore, code: Path) -> None:
    clean = store.ingest(code).sha256
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    (code / "stale.pyc").write_bytes(b"junk")
    assert store.ingest(code).sha256 == clean
    data = make_zip(("app.py", b"x = 1\n"), ("__pycache__/app.cpython-311.pyc", b"junk"),
                    ("old.pyc", b"junk"))
    assert store.ingest_zip(data).sha256 == store.ingest_zip(make_zip(("app.py", b"x = 1\n"))
                                                              ).sha256


def test_requirements_txt_is_detected(store: PackageStore) -> None:
    pkg = store.ingest_zip(make_zip(("app.py", b""), ("requirements.txt", b"requests\n")))
    assert pkg.requirements == "requests\n"
    nested = store.ingest_zip(make_zip(("app.py", b""), ("sub/requirements.txt", b"x\n")))
    assert nested.requirements is None


def test_zip_modes_and_directory_entries(store: PackageStore) -> None:
    data = make_zip(zipfile.ZipInfo("pkg/"), file_entry("pkg/tool", b"#!/bin/sh\n", 0o755),
                    ("./pkg/mod.py", b"Y = 2\n"), zipfile.ZipInfo("empty/"))
    pkg = store.ingest_zip(data)
    assert os.access(pkg.path / "pkg" / "tool", os.X_OK)
    assert not os.access(pkg.path / "pkg" / "mod.py", os.X_OK)
    assert (pkg.path / "empty").is_dir() and pkg.files == 2


def test_concurrent_ingest_of_the_same_content(store: PackageStore, code: Path,
                                               layout: Layout) -> None:
    data = zip_folder(code)
    results: list[Package] = []
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            results.append(store.ingest_zip(data))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ingest) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len({r.sha256 for r in results}) == 1 and len(results) == 6
    assert len(list(layout.packages.iterdir())) == 1
    assert list(layout.staging.iterdir()) == []


def test_store_path_rejects_non_hashes(store: PackageStore) -> None:
    assert not store.exists("../../etc")
    with pytest.raises(ValueError):
        store.path("../x")


# --- symlinks ----------------------------------------------------------------------


def test_zip_symlink_inside_is_kept(store: PackageStore) -> None:
    data = make_zip(("real/mod.py", b"V = 3\n"), symlink_entry("alias.py", "real/mod.py"),
                    symlink_entry("sub/up", "../real"))
    pkg = store.ingest_zip(data)
    assert (pkg.path / "alias.py").read_text() == "V = 3\n"
    assert os.readlink(pkg.path / "alias.py") == "real/mod.py"
    assert os.readlink(pkg.path / "sub" / "up") == "../real"
    assert (pkg.path / "sub" / "up" / "mod.py").is_file()


@pytest.mark.parametrize("target", ["../../../etc/passwd", "/etc/passwd", "a/../../x", ".."])
def test_zip_symlink_leaving_the_package_is_refused(store: PackageStore, layout: Layout,
                                                    target: str) -> None:
    data = make_zip(("app.py", b""), symlink_entry("evil", target))
    refused(store, layout, data, "'evil'", "outside the package")


def test_zip_symlink_chain_leaving_the_package_is_refused(store: PackageStore,
                                                          layout: Layout) -> None:
    # each link looks harmless lexically; followed, "hop/../.." leaves the package
    data = make_zip(("d/x.py", b""), symlink_entry("hop", "d/x.py/.."),
                    symlink_entry("d/deep", "../d"), symlink_entry("esc", "d/deep/../.."))
    refused(store, layout, data, "'esc'", "outside the package")


def test_zip_symlink_loop_is_refused(store: PackageStore, layout: Layout) -> None:
    data = make_zip(("a.py", b""), symlink_entry("x", "y"), symlink_entry("y", "x"))
    refused(store, layout, data, "loop")


def test_zip_entry_written_through_a_symlink_is_refused(store: PackageStore,
                                                         layout: Layout) -> None:
    data = make_zip(symlink_entry("link", "/tmp"), ("link/owned.txt", b"x"))
    refused(store, layout, data, "'link'")
    data = make_zip(("d/a.py", b""), symlink_entry("ln", "d"), symlink_entry("ln/b", "a.py"))
    refused(store, layout, data, "'ln/b'", "symlink")


def test_folder_symlinks(store: PackageStore, code: Path, tmp_path: Path,
                         layout: Layout) -> None:
    (code / "alias.py").symlink_to("lib/util.py")
    (code / "abs_inside").symlink_to(code / "lib")  # absolute but inside: kept, relative
    pkg = store.ingest(code)
    assert os.readlink(pkg.path / "alias.py") == "lib/util.py"
    assert os.readlink(pkg.path / "abs_inside") == "lib"
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (code / "leak").symlink_to(outside)
    with pytest.raises(InvalidPackageError, match=r"'leak'.*outside the package"):
        store.ingest(code)
    assert list(layout.packages.iterdir()) == [pkg.path]
    assert list(layout.staging.iterdir()) == []


def test_folder_with_symlink_and_zip_with_symlink_match(store: PackageStore,
                                                         tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.py").write_text("A = 1\n")
    (folder / "b.py").symlink_to("a.py")
    data = make_zip(("a.py", b"A = 1\n"), symlink_entry("b.py", "./a.py"))
    assert store.ingest(folder).sha256 == store.ingest_zip(data).sha256


# --- refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.py", "traversal"),
        ("a/../../evil.py", "traversal"),
        ("a/b/../../../evil.py", "traversal"),
        ("/etc/cron.d/evil", "absolute"),
        ("C:/Windows/evil.dll", "drive letter"),
        ("c:evil", "drive letter"),
        ("..\\evil.py", "backslash"),
        ("a\\..\\..\\evil.py", "backslash"),
    ],
)
def test_unsafe_names_are_refused(store: PackageStore, layout: Layout, name: str,
                                  why: str) -> None:
    data = make_zip(("ok.py", b"x = 1\n"), (name, b"boom"))
    refused(store, layout, data, repr(name), why)


def test_duplicate_entries_are_refused(store: PackageStore, layout: Layout) -> None:
    with pytest.warns(UserWarning):  # zipfile warns on a duplicate name
        data = make_zip(("app.py", b"a"), ("app.py", b"b"))
    refused(store, layout, data, "duplicate", "'app.py'")
    data = make_zip(("app.py", b"a"), ("./app.py", b"b"))
    refused(store, layout, data, "duplicate", "'./app.py'")


def test_file_and_folder_of_the_same_name_are_refused(store: PackageStore,
                                                       layout: Layout) -> None:
    refused(store, layout, make_zip(("a", b"x"), ("a/b.py", b"y")), "'a/b.py'", "conflicts")


def test_not_a_zip_and_corrupt_zip(store: PackageStore, layout: Layout,
                                   tmp_path: Path) -> None:
    refused(store, layout, b"this is not a zip", "not a valid zip")
    refused(store, layout, b"", "not a valid zip")
    good = make_zip(("app.py", b"def handler(e, c):\n    return 1\n" * 20))
    offset = good.index(b"app.py") + len(b"app.py")  # first byte of the compressed data
    corrupt = good[:offset + 5] + bytes(b ^ 0xFF for b in good[offset + 5:offset + 25]) \
        + good[offset + 25:]
    refused(store, layout, corrupt, "'app.py'")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(InvalidPackageError, match=r"bad\.zip"):
        store.ingest(tmp_path / "bad.zip")
    with pytest.raises(InvalidPackageError, match=r"not found"):
        store.ingest(tmp_path / "missing.zip")
    assert_clean(layout)


def test_empty_packages_are_refused(store: PackageStore, layout: Layout,
                                    tmp_path: Path) -> None:
    refused(store, layout, make_zip(), "empty")
    refused(store, layout, make_zip(zipfile.ZipInfo("dir/")), "empty")
    refused(store, layout, make_zip(("__pycache__/a.pyc", b"x")), "empty")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InvalidPackageError, match=r"empty"):
        store.ingest(tmp_path / "nothing")
    assert_clean(layout)


def test_special_files_in_a_folder_are_refused(store: PackageStore, code: Path,
                                               layout: Layout) -> None:
    os.mkfifo(code / "pipe")
    with pytest.raises(InvalidPackageError, match=r"'pipe'"):
        store.ingest(code)
    assert_clean(layout)


# --- limits ------------------------------------------------------------------------


@pytest.fixture
def small(layout: Layout) -> PackageStore:
    return PackageStore(layout, SMALL)


def test_zip_over_zip_bytes(small: PackageStore, layout: Layout, tmp_path: Path) -> None:
    data = make_zip(("blob.bin", os.urandom(1500)), compression=zipfile.ZIP_STORED)
    refused(small, layout, data, "1000")
    (tmp_path / "big.zip").write_bytes(data)
    with pytest.raises(InvalidPackageError, match=r"'big\.zip'.*1000"):
        small.ingest(tmp_path / "big.zip")
    assert_clean(layout)


def test_unzipped_size_is_counted(layout: Layout) -> None:
    store = PackageStore(layout, replace(SMALL, compression_ratio=10_000))
    data = make_zip(("a.txt", b"a" * 6000), ("b.txt", b"b" * 6000))
    assert len(data) < 1000
    refused(store, layout, data, "unzipped size", "'b.txt'")


def test_declared_size_is_not_trusted(layout: Layout) -> None:
    """An entry whose header claims a tiny size but inflates to more."""
    store = PackageStore(layout, Limits(unzipped_bytes=10_000, compression_ratio=10_000))
    data = bytearray(make_zip(("ok.py", b"x"), ("big.txt", b"z" * 50_000)))
    # shrink the declared uncompressed size of big.txt (local header and central dir)
    needle = (50_000).to_bytes(4, "little")
    assert data.count(needle) == 2
    data = bytes(data).replace(needle, (10).to_bytes(4, "little"))
    message = refused(store, layout, data, "'big.txt'")
    assert "corrupt" in message or "unzipped" in message


def test_compression_ratio_bomb(layout: Layout) -> None:
    store = PackageStore(layout, Limits(compression_ratio=100))
    data = make_zip(("ok.py", b"x = 1\n"), ("bomb.bin", b"\0" * 4_000_000))
    refused(store, layout, data, "'bomb.bin'", "compression ratio")


def test_small_repetitive_files_are_not_bombs(layout: Layout) -> None:
    store = PackageStore(layout, Limits(compression_ratio=100))
    data = make_zip(("app.py", b"x = 1\n" + b" " * 200_000))
    assert store.ingest_zip(data).files == 1


def test_too_many_entries(small: PackageStore, layout: Layout, tmp_path: Path) -> None:
    data = make_zip(*[(f"m{i}.py", b"") for i in range(6)])
    refused(small, layout, data, "entries", "5")
    assert small.ingest_zip(make_zip(*[(f"m{i}.py", b"") for i in range(5)])).files == 5
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(6):
        (folder / f"m{i}.py").write_text("")
    with pytest.raises(InvalidPackageError, match=r"entries.*'m5\.py'"):
        small.ingest(folder)


def test_folder_size_limit(small: PackageStore, layout: Layout, tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a" * 6000)
    (folder / "b.bin").write_bytes(b"b" * 6000)
    with pytest.raises(InvalidPackageError, match=r"unzipped size.*'b\.bin'"):
        small.ingest(folder)
    assert_clean(layout)


def test_stage_is_created_when_missing(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "fresh")  # not ensure()d
    pkg = PackageStore(layout, Limits()).ingest_zip(make_zip(("app.py", b"")))
    assert pkg.path.is_dir() and list(layout.staging.iterdir()) == []
