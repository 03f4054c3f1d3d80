"""The two Python environments under test (the reference's own virtualenv, the project's) and machine facts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
REFERENCE_REQUIREMENT = "embedding-reader==1.8.1"
REFERENCE_EXTRAS = ("s3fs", "aiohttp")  # remote cases need fsspec's http and s3 backends in the venv too
DEFAULT_VENV = BENCH_DIR / ".venv-ref"
PACKAGES = ("embedding-reader", "numpy", "pandas", "pyarrow", "fsspec", "s3fs", "aiohttp")

_VERSIONS_SNIPPET = """
import importlib.metadata as md, json, sys
out = {"python": sys.version.split()[0]}
for name in %r:
    try:
        out[name] = md.version(name)
    except md.PackageNotFoundError:
        out[name] = None
try:
    import embedding_reader
    out["module"] = embedding_reader.__file__
    embedding_reader.EmbeddingReader
except Exception as exc:
    out["import_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


@dataclass
class Implementation:
    """One implementation: a name, the python that runs it and the environment variables it needs."""

    name: str
    python: str
    env: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """True when its embedding_reader imports."""
        return bool(self.versions) and "import_error" not in self.versions


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment for a child: ours without PYTHONPATH / FSSPEC_* (so nothing leaks between impls), plus extra."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("FSSPEC_")}
    env.update(extra)
    return env


def ensure_reference_venv(venv: Path = DEFAULT_VENV, log=print) -> Path:
    """Create the reference's virtualenv with `python -m venv` and pip, unless it already has the release."""
    python = venv / "bin" / "python"
    if python.exists() and _has_release(python):
        return python
    log(f"  creating {venv} with {REFERENCE_REQUIREMENT} (pip resolves its own pins, e.g. pandas<3)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, REFERENCE_REQUIREMENT, *REFERENCE_EXTRAS], check=True)
    return python


def _has_release(python: Path) -> bool:
    """True when the venv's python has the reference release installed."""
    code = "import importlib.metadata as m; print(m.version('embedding-reader'))"
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, env=child_env({}), check=False, cwd="/"
    )
    return done.returncode == 0 and done.stdout.strip() == REFERENCE_REQUIREMENT.split("==")[1]


def probe(impl: Implementation) -> Implementation:
    """Fill impl.versions by asking its python (from a neutral cwd, so the repo is not on sys.path by accident)."""
    done = subprocess.run(
        [impl.python, "-c", _VERSIONS_SNIPPET % (PACKAGES,)],
        check=False,
        capture_output=True,
        text=True,
        env=child_env(impl.env),
        cwd="/",
    )
    try:
        impl.versions = json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        impl.versions = {"import_error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return impl


def _require_module_under(impl: Implementation, folder: Path) -> Implementation:
    """Mark impl unusable if its embedding_reader is not imported from under folder (e.g. the wrong copy)."""
    module = impl.versions.get("module")
    if module and not Path(module).resolve().is_relative_to(folder.resolve()):
        impl.versions["import_error"] = f"embedding_reader imported from {module}, not from under {folder}"
    return impl


def reference(venv: Path = DEFAULT_VENV, log=print) -> Implementation:
    """The reference release in its own virtualenv (created on first use)."""
    impl = probe(Implementation("reference", str(ensure_reference_venv(venv, log))))
    return _require_module_under(impl, venv)


def project(root: Path = REPO_ROOT) -> Implementation:
    """This checkout's library (or a copy of it under root, e.g. `git archive HEAD`), run by the current python."""
    impl = probe(Implementation("project", sys.executable, {"PYTHONPATH": str(root)}))
    return _require_module_under(impl, root / "embedding_reader")


def machine() -> dict[str, str]:
    """CPU model, core count, RAM and OS of this machine."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in x)
        ram = f"{mem_kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        ram = "?"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "ram": ram, "os": platform.platform()}
