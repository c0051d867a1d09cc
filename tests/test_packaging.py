"""A built wheel installed into a fresh virtualenv gives a working `dsagent`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
                   check=True, capture_output=True, cwd=tmp_path)
    wheel = next(dist.glob("dsagent-*.whl"))
    names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True,
                           text=True, check=True).stdout
    assert "dsagent/cli.py" in names and "dsagent/model/__init__.py" in names
    assert "tests/" not in names and "dsagent/tests" not in names
    venv = tmp_path / "venv"
    # The fresh venv sees this interpreter's site-packages (torch and friends are multi-GB), but
    # dsagent itself only from the wheel.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (venv / "lib").mkdir(exist_ok=True)
    pth = next((venv / "lib").glob("python3*/site-packages"))
    (pth / "deps.pth").write_text(site + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    version = subprocess.run([str(venv / "bin" / "dsagent"), "--version"], capture_output=True, text=True,
                             env=env, cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    where = subprocess.run([str(py), "-c", "import dsagent, dsagent.model, dsagent.tools, dsagent.sandbox; "
                            "print(dsagent.__file__)"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert str(venv) in where.stdout
