"""The CLI through its real entry point (a subprocess running the installed `dsagent`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dsagent import __version__


def dsagent(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("dsagent") or str(Path(sys.executable).parent / "dsagent")
    full_env = {**os.environ, "COLUMNS": "400", **(env or {})}
    return subprocess.run([exe, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120)


def test_version() -> None:
    result = dsagent("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"dsagent {__version__}"


@pytest.mark.docker
def test_doctor_with_daemon(shared_dir: Path, docker_available) -> None:
    result = dsagent("doctor", "--model", f"local:{shared_dir / 'parity/v32-tiny-bf16'}")
    assert "docker daemon" in result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_doctor_without_daemon(shared_dir: Path, tmp_path: Path) -> None:
    result = dsagent("doctor", "--model", f"local:{shared_dir / 'parity/v32-tiny-bf16'}",
                     env={"DOCKER_HOST": f"unix://{tmp_path}/missing.sock"})
    assert result.returncode == 1
    assert "not reachable" in result.stdout
    assert "start a Docker daemon" in result.stdout


def test_doctor_reports_missing_model(tmp_path: Path) -> None:
    result = dsagent("doctor", "--model", f"local:{tmp_path / 'nowhere'}")
    assert result.returncode == 1
    assert "no config.json" in result.stdout


def test_config_show_lists_layers(git_repo: Path) -> None:
    (git_repo / ".dsagent.toml").write_text("[agent]\nmax_steps = 12\n")
    result = dsagent("config", "show", "--set", "sandbox.cpus=3", cwd=git_repo,
                     env={"DSAGENT_AGENT__APPROVAL": "ask"})
    assert result.returncode == 0, result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert "12" in lines["agent.max_steps"] and ".dsagent.toml" in lines["agent.max_steps"]
    assert "'ask'" in lines["agent.approval"] and "environment" in lines["agent.approval"]
    assert "3.0" in lines["sandbox.cpus"] and "command line" in lines["sandbox.cpus"]
    assert "default" in lines["sandbox.pids"]
    assert "scripted replay of recorded messages (for tests and demos)." in lines["model.backend"]  # not cut at a line


def test_malformed_config_is_one_line(git_repo: Path) -> None:
    (git_repo / ".dsagent.toml").write_text("[agent\n")
    result = dsagent("config", "show", cwd=git_repo)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and ".dsagent.toml:1:" in result.stderr


def test_an_error_is_one_line_printed_as_written(git_repo: Path) -> None:
    # A narrow terminal must not break the line, and `[model]` is text, not console markup.
    env = {"COLUMNS": "40", "HOME": str(git_repo), "XDG_CONFIG_HOME": str(git_repo / ".config")}
    result = dsagent("run", "hi", cwd=git_repo, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "set [model] path in .dsagent.toml" in result.stderr


def test_no_command_without_a_terminal_says_what_to_run_instead(git_repo: Path) -> None:
    result = dsagent(cwd=git_repo)  # stdin and stdout are pipes here
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "needs a terminal" in result.stderr and "--headless" in result.stderr
