"""The README's examples marked runnable run as written, and its set-up commands exist in the Makefile."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
RUNNABLE = re.findall(r"<!-- runnable -->\n```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_has_runnable_examples() -> None:
    assert len(RUNNABLE) >= 3


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"example{k}" for k in range(len(RUNNABLE))])
def test_readme_example_runs(code: str, tmp_path: Path) -> None:
    """Each runnable block, in a fresh interpreter and an empty folder, exits cleanly."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


def test_readme_set_up_commands_are_make_targets() -> None:
    """The two set-up commands the README gives are targets of the Makefile."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE)
