"""`dsagent run`, `sessions`, `resume` (and `--replay`) through the real entry point, plus crash safety:
runs killed with SIGKILL at many points leave sessions that `dsagent resume` finishes."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_testkit import call, step, write_script
from dsagent.agent.events import SCHEMA_VERSION, event_json_schema, parse_event
from dsagent.agent.session import list_sessions, load_session

EXE = shutil.which("dsagent") or str(Path(sys.executable).parent / "dsagent")

FIX = [
    step("Read add().", call("read_file", "c1", path="calc.py")),
    step(
        "It subtracts; fix it.",
        call("edit_file", "c2", path="calc.py", old_string="return a - b", new_string="return a + b"),
    ),
    step("Check the tree.", call("list_dir", "c3", path=".")),
    step("Done.", call("finish", "c4", summary="add() adds now")),
]


def dsagent(*args: str, cwd: Path, timeout: float = 120, columns: int = 200) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_run_headless_streams_valid_jsonl_and_the_patch(project, tmp_path):
    script = write_script(tmp_path / "fix.jsonl", FIX)
    patch = tmp_path / "out.patch"
    done = dsagent(
        "run",
        "make test_add pass",
        "--model",
        f"scripted:{script}",
        "--no-sandbox",
        "--headless",
        "--patch",
        str(patch),
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    events = [parse_event(line) for line in done.stdout.splitlines()]
    assert events[0].type == "session_started" and events[0].schema_version == SCHEMA_VERSION
    assert events[0].scripted and events[0].model["backend"] == "scripted"
    assert [e.reason for e in events if e.type == "turn_finished"] == ["finished"]
    final = events[-1]
    assert final.type == "patch" and final.files == ["calc.py"] and "+    return a + b" in final.diff
    assert patch.read_text() == final.diff
    assert "return a - b" in (project / "calc.py").read_text()  # the user's tree is untouched
    # The session file holds the same events after its header.
    [summary] = list_sessions(project)
    saved = load_session(summary.path)
    assert [e.type for e in saved.events] == [e.type for e in events]
    # Cut back to a session that stopped before its task reached the agent: resume starts the task.
    lines = summary.path.read_bytes().split(b"\n")
    summary.path.write_bytes(b"\n".join(lines[:2]) + b"\n")
    (summary.path.with_suffix(".patch")).unlink()
    resumed = dsagent("resume", "--no-sandbox", "--headless", cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    assert [e.reason for e in map(parse_event, resumed.stdout.splitlines()) if e.type == "turn_finished"] == [
        "finished"
    ]
    schema = json.loads(dsagent("run", "--schema", cwd=project).stdout)
    assert str(SCHEMA_VERSION) in schema["title"] and set(schema["discriminator"]["mapping"]) >= {
        "session_started",
        "tool_call_finished",
        "usage",
        "turn_finished",
        "patch",
    }
    assert event_json_schema() == schema


@pytest.mark.slow
def test_text_mode_exit_codes_sessions_and_replay(project, tmp_path):
    script = write_script(tmp_path / "fix.jsonl", FIX)
    done = dsagent("run", "fix add", "--model", f"scripted:{script}", "--no-sandbox", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "scripted" in done.stdout and "▶ edit_file" in done.stdout and "+    return a + b" in done.stdout
    limited = dsagent(
        "run", "fix add", "--model", f"scripted:{script}", "--no-sandbox", "--max-steps", "1", cwd=project
    )
    assert limited.returncode == 4 and "max_steps" in limited.stdout
    missing = dsagent("run", "x", "--model", f"scripted:{tmp_path / 'none.jsonl'}", "--no-sandbox", cwd=project)
    assert missing.returncode == 2 and "cannot read the scripted session" in missing.stderr
    listing = dsagent("sessions", cwd=project)
    assert listing.stdout.count("finished") == 1 and "max_steps" in listing.stdout
    narrow = dsagent("sessions", cwd=project, columns=40).stdout  # every id whole, to copy into `resume`
    assert all(f"{item.id}  " in narrow for item in list_sessions(project)), narrow
    first = list_sessions(project)[-1].id
    again = dsagent("resume", first, "--replay", "--no-sandbox", cwd=project)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "4 tool calls, identical" in again.stderr
    finished = dsagent("resume", first, "--no-sandbox", cwd=project)
    assert finished.returncode == 2 and "is finished" in finished.stderr


def _killed_run(project: Path, script: Path, delay: float) -> Path | None:
    process = subprocess.Popen(
        [EXE, "run", "fix add", "--model", f"scripted:{script}", "--no-sandbox", "--headless"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    found = list_sessions(project)
    return found[0].path if found else None


@pytest.mark.slow
def test_sigkill_at_many_points_leaves_resumable_sessions(project, tmp_path):
    slow = [{**message, "reasoning_content": message["reasoning_content"] * 8, "delay": 0.05} for message in FIX]
    script = write_script(tmp_path / "slow.jsonl", slow)
    started = time.monotonic()
    assert dsagent("run", "fix add", "--model", f"scripted:{script}", "--no-sandbox", cwd=project).returncode == 0
    whole = time.monotonic() - started  # how long a run takes on this machine right now
    rng = random.Random(11)
    states = set()
    for point in range(8):
        for old in (project / ".dsagent" / "sessions").glob("*"):
            old.unlink()
        path = _killed_run(project, script, whole * (point + rng.random()) / 8)
        if path is None:
            continue  # killed before the session file existed: nothing to resume, nothing lost
        saved = load_session(path)  # a torn last line is ignored
        states.add(len(saved.events))
        if not _finished(saved):
            resumed = dsagent("resume", "--no-sandbox", "--headless", cwd=project)
            assert resumed.returncode == 0, f"kill point {point}: {resumed.stderr}"
        final = load_session(path)
        calls = [
            c["id"] for e in final.events if e.type == "assistant_message" for c in e.message.get("tool_calls", [])
        ]
        results = [e for e in final.events if e.type == "tool_call_finished"]
        assert sorted(calls) == sorted(e.call_id for e in results), f"kill point {point}: a call lost its result"
        assert final.events[-1].type in ("patch", "turn_finished")
        patch = [e for e in final.events if e.type == "patch"]
        if patch:  # a recorded edit is in the patch; an edit in the patch was at least attempted
            fixed = "+    return a + b" in patch[-1].diff
            story = f"kill point {point} after {len(saved.events)} events: {_story(final.events)}"
            assert fixed or not any(e.name == "edit_file" and e.ok for e in results), story
            assert not fixed or any(e.name == "edit_file" for e in results), story
    assert len(states) >= 3, f"the kill points hit too few distinct states: {sorted(states)}"


def _story(events) -> str:
    """The events in short, for a failure message: type, tool and outcome, patch size."""
    parts = []
    for e in events:
        if e.type.endswith("_delta") or e.type == "usage":
            continue
        if e.type == "tool_call_finished":
            parts.append(f"{e.name}:{e.call_id}:{'ok' if e.ok else 'failed'}")
        elif e.type == "patch":
            parts.append(f"patch({len(e.diff)} chars, fixed={'+    return a + b' in e.diff})")
        else:
            parts.append(e.type)
    return ", ".join(parts)


def _finished(saved) -> bool:
    return any(e.type == "turn_finished" for e in saved.events)


def test_terminal_approval_shows_the_edit_and_takes_a_note():
    import io

    from dsagent.agent.cli import ask_on_terminal
    from dsagent.agent.events import ApprovalRequested
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=60, color_system=None)
    args = {"path": "calc.py", "old_string": "return a - b", "new_string": "return a + b  # [red]x[/]"}
    edit = ApprovalRequested(call_id="c1", name="edit_file", arguments=args)
    decision = ask_on_terminal(edit, console, io.StringIO("n\nuse mul [here]\n"))
    assert (decision.choice, decision.note) == ("deny", "use mul [here]")
    shown = out.getvalue()
    assert "  - return a - b\n  + return a + b  # [red]x[/]\n" in shown  # text, not console markup
    assert "[y]es once, [a]lways this session, [n]o" in shown
    shell = ApprovalRequested(call_id="c2", name="run_shell", arguments={"command": "ls"}, command="ls [/]")
    assert ask_on_terminal(shell, console, io.StringIO("a\n")).choice == "session" and "$ ls [/]" in out.getvalue()
