"""Packaging (`make test-packaging`): the sdist and the wheel build, install into fresh virtualenvs and read there.

`python -m build` makes the sdist, then the wheel from that sdist, so the sdist is known to build. Each is
installed into its own new virtualenv (dependencies from the package index, through pip's cache), where a
script outside the working tree reads two npy files row for row and reports the installed version. A third
virtualenv gets the wheel, then `pip install autofaiss faiss-cpu` with tests/autofaiss/constraints.txt, as a
1.8.1 user would: pip must keep this package (autofaiss asks for embedding_reader>=1.8.0,<2) and autofaiss
must build an index through it. Deselected from `make test` (marker `packaging`, see pyproject.toml).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
VERSION = "1.9.0"
CONSTRAINTS = ROOT / "tests" / "autofaiss" / "constraints.txt"
BUILD_TIMEOUT = 300
VENV_TIMEOUT = 120
INSTALL_TIMEOUT = 420
SCRIPT_TIMEOUT = 180

# Run by the virtualenv's python, from a folder outside the working tree (so the import is the installed one):
# two npy files read back row for row, with their row numbers, then what was imported, as JSON.
SMOKE_READ = r"""
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np

import embedding_reader
import embedding_reader.errors
from embedding_reader import EmbeddingReader

folder = Path(sys.argv[1])
folder.mkdir()
rng = np.random.default_rng(2024)
first = rng.standard_normal((300, 16)).astype(np.float32)
second = rng.standard_normal((211, 16)).astype(np.float32)
np.save(folder / "part_10.npy", second)  # string order: part_10 before part_9
np.save(folder / "part_9.npy", first)
reader = EmbeddingReader(str(folder), file_format="npy")
assert (reader.count, reader.dimension) == (511, 16), (reader.count, reader.dimension)
vectors, rows = [], []
for batch, meta in reader(batch_size=128, show_progress=False):
    vectors.append(batch)
    rows.append(meta["i"].to_numpy())
np.testing.assert_array_equal(np.concatenate(vectors), np.concatenate([second, first]))
np.testing.assert_array_equal(np.concatenate(rows), np.arange(511))
print(json.dumps({
    "version": embedding_reader.__version__,
    "metadata_version": importlib.metadata.version("embedding_reader"),
    "module": embedding_reader.__file__,
    "errors": embedding_reader.errors.EmbeddingReaderError.__name__,
    "batches": len(vectors),
}))
"""

# Run after autofaiss is installed next to the wheel: versions, and a small Flat index built from npy files.
AUTOFAISS_SMOKE = r"""
import importlib.metadata
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pyarrow

import autofaiss
import embedding_reader
import embedding_reader.errors

folder = Path(sys.argv[1])
folder.mkdir()
rng = np.random.default_rng(7)
parts = [rng.standard_normal((250, 8)).astype(np.float32) for _ in range(2)]
for number, part in enumerate(parts):
    np.save(folder / f"{number}.npy", part)
index, _ = autofaiss.build_index(
    str(folder), index_path=str(folder.parent / "knn.index"), index_infos_path=str(folder.parent / "infos.json"),
    index_key="Flat", metric_type="l2", max_index_memory_usage="100M", current_memory_available="1G",
    verbose=logging.WARNING,
)
np.testing.assert_array_equal(index.reconstruct_n(0, index.ntotal), np.concatenate(parts))
print(json.dumps({
    "version": embedding_reader.__version__,
    "metadata_version": importlib.metadata.version("embedding_reader"),
    "module": embedding_reader.__file__,
    "autofaiss": importlib.metadata.version("autofaiss"),
    "numpy": np.__version__,
    "pyarrow": pyarrow.__version__,
    "ntotal": index.ntotal,
}))
"""


def clean_env() -> dict[str, str]:
    """This environment without the dev virtualenv's traces (a child venv must not see .venv or the tree)."""
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(command: list[str], timeout: float, cwd: Path | None = None) -> str:
    """Run `command`; its stdout, or a failure showing the end of both outputs."""
    result = subprocess.run(
        command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert (
        result.returncode == 0
    ), f"{command} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    return result.stdout


def make_venv(path: Path) -> Path:
    """A new virtualenv at `path`; its python."""
    run([sys.executable, "-m", "venv", str(path)], VENV_TIMEOUT)
    return path / "bin" / "python"


def pip_install(python: Path, *arguments: str) -> str:
    """pip install into that virtualenv (pip's cache is shared, so repeated downloads are local)."""
    return run([str(python), "-m", "pip", "install", "--quiet", *arguments], INSTALL_TIMEOUT)


def run_script(python: Path, script: str, workdir: Path) -> dict:
    """Run `script` with the virtualenv's python in `workdir` (outside the working tree); its JSON report."""
    path = workdir / "smoke.py"
    path.write_text(script, encoding="utf-8")
    lines = run([str(python), str(path), str(workdir / "data")], SCRIPT_TIMEOUT, cwd=workdir).strip().splitlines()
    return json.loads(lines[-1])


def assert_installed_is_ours(report: dict, venv: Path) -> None:
    """The imported embedding_reader is this package's release, from the virtualenv's site-packages."""
    assert report["version"] == VERSION
    assert report["metadata_version"] == VERSION
    module = Path(report["module"]).resolve()
    assert module.is_relative_to(venv.resolve()), module
    assert not module.is_relative_to(ROOT / "embedding_reader"), module


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel built from it, by `python -m build` into a temporary folder."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], BUILD_TIMEOUT)
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert [path.name for path in sdists] == [f"embedding_reader-{VERSION}.tar.gz"]
    assert [path.name for path in wheels] == [f"embedding_reader-{VERSION}-py3-none-any.whl"]
    return {"sdist": sdists[0], "wheel": wheels[0]}


def test_sdist_carries_what_a_rebuild_needs(dists):
    """The sdist holds the build inputs, the license, the changelog and every module of the package."""
    prefix = f"embedding_reader-{VERSION}/"
    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.removeprefix(prefix) for name in sdist.getnames()}
    needed = {"pyproject.toml", "README.md", "LICENSE", "PKG-INFO", "embedding_reader/py.typed"}
    if (ROOT / "CHANGELOG.md").exists():
        needed.add("CHANGELOG.md")
    needed |= {str(path.relative_to(ROOT)) for path in (ROOT / "embedding_reader").rglob("*.py")}
    assert needed <= names, sorted(needed - names)
    assert not any(name.startswith(("tests/", "benchmarks/", ".venv")) for name in names)


def test_wheel_metadata(dists):
    """The wheel's metadata: version, Python floor, license, core dependencies, extras, console script."""
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = f"embedding_reader-{VERSION}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert {"embedding_reader/py.typed", "embedding_reader/_version.py", f"{info}/licenses/LICENSE"} <= names
    fields = [line.split(": ", 1) for line in metadata.split("\n\n", 1)[0].splitlines() if ": " in line]
    assert ["Version", VERSION] in fields
    assert ["Requires-Python", ">=3.9"] in fields
    assert ["License-Expression", "MIT"] in fields
    requires = [value for key, value in fields if key == "Requires-Dist"]
    core = ["numpy>=1.24", "pandas>=2.0", "pyarrow>=15", "fsspec>=2023.6.0", "tqdm>=4.60"]
    assert [value for value in requires if ";" not in value] == core
    extras = {value for key, value in fields if key == "Provides-Extra"}
    assert extras == {"s3", "gcs", "http", "ray", "hdf5", "all"}
    assert 'h5py>=3.8; extra == "all"' in requires and 's3fs>=2023.6.0; extra == "s3"' in requires
    classifiers = {value for key, value in fields if key == "Classifier"}
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in range(9, 14)} <= classifiers
    assert "embedding-reader = embedding_reader.cli:main" in entry_points


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installs_into_a_fresh_venv_and_reads(dists, tmp_path, kind):
    """pip install <file> into a new virtualenv: the read there is right, the version 1.9.0, the command there."""
    python = make_venv(tmp_path / "venv")
    pip_install(python, str(dists[kind]))
    report = run_script(python, SMOKE_READ, tmp_path)
    assert_installed_is_ours(report, tmp_path / "venv")
    assert report["errors"] == "EmbeddingReaderError"
    assert report["batches"] == 4  # 511 rows in batches of 128
    command = tmp_path / "venv" / "bin" / "embedding-reader"
    assert run([str(command), "--version"], SCRIPT_TIMEOUT, cwd=tmp_path).strip() == f"embedding-reader {VERSION}"


def test_autofaiss_install_keeps_this_package(dists, tmp_path):
    """The wheel, then autofaiss and faiss-cpu with the pinned set: still this 1.9.0, and autofaiss works on it."""
    python = make_venv(tmp_path / "venv")
    pip_install(python, str(dists["wheel"]))
    pip_install(python, "-c", str(CONSTRAINTS), "autofaiss", "faiss-cpu")
    shown = run([str(python), "-m", "pip", "show", "embedding_reader"], SCRIPT_TIMEOUT)
    assert f"Version: {VERSION}" in shown.splitlines()
    report = run_script(python, AUTOFAISS_SMOKE, tmp_path)
    assert_installed_is_ours(report, tmp_path / "venv")
    lines = CONSTRAINTS.read_text(encoding="utf-8").splitlines()
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    assert report["autofaiss"] == pins["autofaiss"]
    assert (report["numpy"], report["pyarrow"]) == (pins["numpy"], pins["pyarrow"])
    assert report["ntotal"] == 500
