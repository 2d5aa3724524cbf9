"""Dependency layers: pip --target builds, cached by normalized requirements.

The real-pip tests install a tiny wheel written here into a local folder, with
``--no-index``, so they never touch PyPI.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest

from faasbox.errors import DependencyBuildError
from faasbox.layout import Layout
from faasbox.registry.layers import Layer, LayerBuilder, normalize_requirements


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "home").ensure()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``tiny_mod-0.1-py3-none-any.whl`` (module ``tinymod``)."""
    folder = tmp_path_factory.mktemp("wheels")
    dist = "tiny_mod-0.1.dist-info"
    files = {
        "tinymod.py": "ANSWER = 42\n",
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: tiny-mod\nVersion: 0.1\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(folder / "tiny_mod-0.1-py3-none-any.whl", "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr(f"{dist}/RECORD", record)
    return folder


def requirements_for(wheels: Path, name: str = "tiny-mod") -> str:
    return f"# local only\n--no-index\n--find-links {wheels}\n{name}==0.1\n"


def test_build_installs_an_importable_precompiled_layer(layout: Layout, wheels: Path) -> None:
    layer = LayerBuilder(layout).build(requirements_for(wheels))
    assert isinstance(layer, Layer)
    assert layer.path == layout.layer(layer.sha256)
    assert layer.sha256 == LayerBuilder.key(requirements_for(wheels))
    plain = hashlib.sha256(normalize_requirements(requirements_for(wheels)).encode()).hexdigest()
    assert layer.sha256 != plain  # keyed by interpreter and platform too
    code = "import sys; sys.path.insert(0, sys.argv[1]); import tinymod; " \
        "print(tinymod.ANSWER, tinymod.__file__)"
    out = subprocess.run([sys.executable, "-I", "-c", code, str(layer.path)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["42", str(layer.path / "tinymod.py")]
    pycs = list((layer.path / "__pycache__").glob("tinymod.*.pyc"))
    assert pycs and str(layer.path / "tinymod.py").encode() in pycs[0].read_bytes()
    assert list(layout.staging.iterdir()) == []

    # equivalent requirements: cached, pip is not run (this "pip" would fail loudly)
    cached = LayerBuilder(layout, pip="/nonexistent/pip").build(
        f"\n  TINY_MOD == 0.1   # same thing\n--find-links {wheels}\n\n--no-index\n"
    )
    assert cached == layer
    assert [p.name for p in layout.layers.iterdir()] == [layer.sha256]


def test_failed_build_reports_pip_error_and_leaves_nothing(layout: Layout) -> None:
    builder = LayerBuilder(layout)
    with pytest.raises(DependencyBuildError) as info:
        builder.build("--no-index\nfaasbox-no-such-package-xyz==1.0\n")
    assert "No matching distribution found for faasbox-no-such-package-xyz" in str(info.value)
    assert list(layout.layers.iterdir()) == []
    assert list(layout.staging.iterdir()) == []
    with pytest.raises(DependencyBuildError, match="nonexistent"):
        builder.build("/nonexistent/dir/pkg-1.0-py3-none-any.whl\n")
    assert list(layout.layers.iterdir()) == []


def test_empty_requirements_build_nothing(layout: Layout) -> None:
    builder = LayerBuilder(layout, pip="/nonexistent/pip")
    assert builder.build("") is None
    assert builder.build("# only comments\n\n   \n") is None
    assert LayerBuilder.key("  # x\n") is None


FAKE_PIP = textwrap.dedent("""
    import pathlib, sys, time
    args = sys.argv[1:]
    target = pathlib.Path(args[args.index("--target") + 1])
    reqs = pathlib.Path(args[args.index("-r") + 1]).read_text()
    with open(sys.argv[0] + ".calls", "a") as fh:
        fh.write(reqs.replace("\\n", "|") + "\\n")
    time.sleep(0.3)
    if "fail" in reqs:
        sys.stderr.write("ERROR: fake failure for " + reqs)
        sys.exit(1)
    target.mkdir(parents=True, exist_ok=True)
    (target / "fakemod.py").write_text("OK = True\\n")
""")


@pytest.fixture
def fake_pip(tmp_path: Path) -> tuple[str, Path]:
    script = tmp_path / "fakepip.py"
    script.write_text(FAKE_PIP)
    return f"{sys.executable} {script}", Path(f"{script}.calls")


def test_concurrent_builds_of_one_key_run_pip_once(layout: Layout,
                                                   fake_pip: tuple[str, Path]) -> None:
    pip, calls = fake_pip
    builders = [LayerBuilder(layout, pip=pip) for _ in range(2)]  # two "processes"
    texts = ["alpha\nbeta\n", "Beta\nALPHA\n", "# c\nalpha\nbeta", "beta\n\nalpha"]
    results: list[Layer | None] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(builders[i % 2].build(texts[i])))
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len({r.sha256 for r in results if r}) == 1
    assert calls.read_text().splitlines() == ["alpha|beta|"]
    layer = results[0]
    assert layer is not None and (layer.path / "fakemod.py").is_file()
    assert list((layer.path / "__pycache__").glob("fakemod.*.pyc"))

    assert builders[0].build("ALPHA\nbeta") == layer
    assert len(calls.read_text().splitlines()) == 1  # the cache hit ran no pip


def test_failed_fake_build_keeps_stderr(layout: Layout, fake_pip: tuple[str, Path]) -> None:
    with pytest.raises(DependencyBuildError, match="fake failure for fail-me"):
        LayerBuilder(layout, pip=fake_pip[0]).build("fail-me\n")
    assert list(layout.layers.iterdir()) == []


def test_pip_timeout(layout: Layout, tmp_path: Path) -> None:
    script = tmp_path / "slowpip.py"
    script.write_text("import time\ntime.sleep(30)\n")
    builder = LayerBuilder(layout, pip=f"{sys.executable} {script}", timeout_s=0.5)
    start = time.monotonic()
    with pytest.raises(DependencyBuildError, match="timed out"):
        builder.build("anything\n")
    assert time.monotonic() - start < 10
    assert list(layout.layers.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Requests\n# comment\n\nnumpy  # pinned later\n", "numpy\nrequests"),
        ("Foo_Bar.baz >= 1.0 , <2\n", "foo-bar-baz<2,>=1.0"),
        ("PKG[Extra_One, b] ==1 ; python_version < '3.12'",
         "pkg[b,extra-one]==1 ; python_version < '3.12'"),
        ("x\nX\nx  \n", "x"),
        ("requests \\\n  >= 2\n", "requests>=2"),
        ("My.Pkg @ https://example.com/My.Pkg-1.0.tar.gz\n",
         "my-pkg @ https://example.com/My.Pkg-1.0.tar.gz"),
        ("--Find-Links /Some/Path\nZ\n", "--Find-Links /Some/Path\nz"),
        ("./Local/Dir\n/abs/Pkg-1.0-py3-none-any.whl\nLocal-1.0.tar.gz\n",
         "./Local/Dir\n/abs/Pkg-1.0-py3-none-any.whl\nLocal-1.0.tar.gz"),
        ("git+https://github.com/Org/Repo.git#egg=Repo\n",
         "git+https://github.com/Org/Repo.git#egg=Repo"),
        ("Pkg==1.0 --hash=sha256:ABC\n", "pkg==1.0 --hash=sha256:ABC"),
        ("  \n# nothing\n", ""),
    ],
)
def test_normalize_requirements(text: str, expected: str) -> None:
    assert normalize_requirements(text) == expected
    assert normalize_requirements(expected) == expected  # stable


def test_normalization_ignores_order_comments_and_case() -> None:
    a = "requests>=2\nNumPy==1.26\n"
    b = "# deps\nnumpy == 1.26   # arrays\n\n  REQUESTS >=2\n"
    assert normalize_requirements(a) == normalize_requirements(b)
    assert LayerBuilder.key(a) == LayerBuilder.key(b)
    assert LayerBuilder.key(a) != LayerBuilder.key("requests>=3\nnumpy==1.26")
