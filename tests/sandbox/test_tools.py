"""run_shell through the registry and through `dsagent tool`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from dsagent.config import SandboxSettings
from dsagent.sandbox.lazy import LazySandbox
from dsagent.tools.registry import default_registry

pytestmark = pytest.mark.docker

DSAGENT = os.path.join(os.path.dirname(sys.executable), "dsagent")


def test_run_shell_in_the_default_registry(sandbox_image, tmp_path):
    sandbox = LazySandbox(tmp_path, SandboxSettings(command_timeout=20))
    registry = default_registry(tmp_path, index_dir=tmp_path / ".index", sandbox=sandbox)
    try:
        assert {"run_shell", "run_tests"} <= set(registry.names()) and registry["run_shell"].mutates
        result = registry.call("run_shell", {"command": "echo out; echo err >&2; exit 4"})
        assert not result.ok and result.data["exit_code"] == 4
        assert result.text.startswith("out\nerr\n[exit code 4 (")
        slow = registry.call("run_shell", {"command": "echo begun; sleep 60", "timeout": 1})
        assert slow.timed_out and not slow.ok and "begun" in slow.text and "timed out" in slow.text
        assert not registry.call("run_shell", {}).ok  # missing command: an error result, not an exception
    finally:
        sandbox.close()
    assert "run_shell" not in default_registry(tmp_path, index_dir=tmp_path / ".index")


def test_dsagent_tool_run_shell(sandbox_image, git_repo):
    arguments = json.dumps({"command": "cat README.md; echo made > new.txt; id -u"})
    proc = subprocess.Popen(
        [DSAGENT, "tool", "run_shell", arguments, "--repo", str(git_repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert stdout.startswith(f"hello\n{os.getuid()}\n[exit code 0")
    assert not (git_repo / "new.txt").exists()  # it ran in a workspace: the repository is unchanged
    from dsagent.sandbox.daemon import connect

    left = connect().containers.list(all=True, filters={"label": "dsagent.sandbox"})
    assert not [c for c in left if c.labels.get("dsagent.owner", "").endswith(f":{proc.pid}")]
