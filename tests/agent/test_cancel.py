"""Cancelling a run while a real command runs in the sandbox: the command's processes die, the result
keeps the partial output, and the saved session is consistent and resumable."""

from __future__ import annotations

import threading
import time

import pytest
from agent_testkit import call, step
from dsagent.agent.runner import AgentRun
from dsagent.agent.scripted import ScriptedBackend
from dsagent.agent.session import load_session
from dsagent.config import Settings

SCRIPT = [
    step("Run the slow check.", call("run_shell", "s1", command="echo started; sleep 60; echo never")),
    step("Done.", call("finish", "f1", summary="ok")),
]
STILL_RUNNING = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c 'slee[p] 60'"


@pytest.mark.docker
def test_cancel_mid_command_then_resume(project, sandbox_image):
    settings = Settings(sandbox={"image": sandbox_image})
    run = AgentRun(settings, project, ScriptedBackend(SCRIPT), task="check")

    def cancel_once_running(event) -> None:
        if event.type == "tool_call_started" and event.name == "run_shell":
            threading.Timer(1.5, run.agent.cancel).start()

    run.sinks.append(cancel_once_running)
    try:
        started = time.monotonic()
        result = run.agent.run("check")
        assert result.reason == "cancelled" and time.monotonic() - started < 30
        [finished] = [e for e in load_session(run.session_path).events if e.type == "tool_call_finished"]
        assert finished.cancelled and not finished.ok
        assert "cancelled" in finished.output and "started" in finished.output and "never" not in finished.output
        assert run.sandbox.exec(STILL_RUNNING).output.strip() == "0"  # the command's process group is gone
    finally:
        run.close()
    saved = load_session(run.session_path)
    again = AgentRun(settings, project, ScriptedBackend(SCRIPT[1:]), saved=saved, sandbox=False)
    try:
        assert again.agent.conversation.pending_calls() == []
        assert again.agent.send("go on").reason == "finished"
    finally:
        again.close()
