"""The README's first command: scripts/demo and the entry point it ends in."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_rejects_an_unknown_example() -> None:
    proc = subprocess.run([sys.executable, "-m", "dsagent.agent.fix_demo", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "pagination" in proc.stderr


def fresh_copy(dest: Path) -> Path:
    """The files a clone would have (tracked and not ignored), with a .venv that reuses this one's packages."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, check=True, capture_output=True
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        source = REPO_ROOT / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(source.read_bytes())
            (dest / rel).chmod(source.stat().st_mode)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest / ".venv")], check=True)
    purelib = Path(sysconfig.get_paths(vars={"base": str(dest / ".venv")})["purelib"])
    shared = sysconfig.get_paths()["purelib"]
    (purelib / "shared.pth").write_text(f"import site; site.addsitedir({shared!r})\n")
    (dest / ".venv" / ".dsagent-installed").touch()  # installed already: scripts/setup has nothing to do
    return dest


@pytest.mark.docker
@pytest.mark.slow
def test_scripts_demo_from_a_fresh_copy(tmp_path: Path, sandbox_image) -> None:
    clone = fresh_copy(tmp_path / "clone")
    env = {**os.environ, "COLUMNS": "200", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(
        ["scripts/demo", "textstats"], cwd=clone, capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SCRIPTED run" in proc.stderr and "pre-written" in proc.stderr
    # The readable form: the failure, the agent's steps, the table, the patch, the cause and the fix.
    for shown in (
        "the failure",
        "scripted",
        "▶ edit_file",
        "verification",
        "│ fixed",
        "cause and fix",
        "+    if len(text) <= limit:",
        "fixed tests/test_text.py::test_truncate_unicode; review the patch, then apply it with `git apply /",
        ".dsagent/patches/fix-",  # the patch was written as well as printed
    ):
        assert shown in proc.stdout, shown
    assert not (clone / "examples" / "textstats" / ".git").exists()  # the example itself is never touched
