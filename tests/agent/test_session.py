"""Session files: written as events happen, read back after any cut, restored into a working agent."""

from __future__ import annotations

import json

import pytest
from agent_testkit import call, step
from dsagent.agent import Agent
from dsagent.agent.events import TurnStarted
from dsagent.agent.scripted import ScriptedBackend
from dsagent.agent.session import (
    SessionError,
    SessionHeader,
    SessionWriter,
    find_session,
    list_sessions,
    load_session,
)
from dsagent.config import Settings

SCRIPT = [
    step("Read.", call("read_file", "c1", path="calc.py")),
    step("Fix.", call("edit_file", "c2", path="calc.py", old_string="return a - b", new_string="return a + b")),
    step("List.", call("list_dir", "c3", path=".")),
    step("Done.", call("finish", "c4", summary="fixed")),
]


def header(repo, settings=None, **extra):
    settings = settings or Settings()
    return SessionHeader(
        session_id=extra.pop("session_id", "s1"),
        repo=str(repo),
        task="fix",
        model={"backend": "scripted"},
        config=settings.model_dump(mode="json"),
        **extra,
    )


def recorded_run(project, registry, script=SCRIPT, settings=None):
    writer = SessionWriter.create(project, header(project, settings))
    agent = Agent(ScriptedBackend(script), registry, settings or Settings(), None, writer, session_id="s1")
    result = agent.run("fix add()")
    writer.close()
    return agent, result, writer.path


def test_header_masks_secrets_and_sessions_are_listed(project):
    settings = Settings(model={"backend": "openai", "path": "http://x", "api_key": "sk-secret-123"})
    writer = SessionWriter.create(project, header(project, settings))
    writer(TurnStarted(turn=1, user_message="fix"))
    writer.close()
    text = writer.path.read_text()
    assert "sk-secret-123" not in text and "**********" in text
    assert (project / ".dsagent" / ".gitignore").read_text() == "*\n"
    [summary] = list_sessions(project)
    assert (summary.id, summary.status, summary.task) == ("s1", "unfinished", "fix")
    assert find_session(project) == find_session(project, "s") == writer.path
    with pytest.raises(SessionError, match="no session 'zz'"):
        find_session(project, "zz")


def test_every_cut_of_a_session_file_restores_a_consistent_agent(project, registry, tmp_path):
    agent, result, path = recorded_run(project, registry)
    assert result.reason == "finished"
    data = path.read_bytes()
    lines = data.split(b"\n")[:-1]
    original = load_session(path)
    assert [e.type for e in original.events] == [json.loads(line)["type"] for line in lines[1:]]
    cuts = sorted(
        {len(b"\n".join(lines[:n])) + 1 for n in range(1, len(lines) + 1)}
        | {len(b"\n".join(lines[:n])) + 1 + len(lines[n]) // 2 for n in range(1, len(lines))}
    )
    for cut in cuts:  # every line boundary, and half-way through every line (a torn write)
        cut_path = tmp_path / f"cut-{cut}.jsonl"
        cut_path.write_bytes(data[:cut])
        saved = load_session(cut_path)
        restored = Agent(ScriptedBackend([]), registry, Settings(), None, None, session_id="s1")
        restored.restore(saved)
        conversation = restored.conversation
        # Whatever the cut, each finished call has its result and only the step in flight lacks some.
        answered = {item["tool_call_id"] for item in conversation.items if item["role"] == "tool"}
        pending = {c["id"] for c in conversation.pending_calls()}
        called = {c["id"] for item in conversation.items for c in item.get("tool_calls") or []}
        assert called == answered | pending
        assert len(conversation.items) <= len(agent.conversation.items)
        assert conversation.items == agent.conversation.items[: len(conversation.items)]


def test_resume_after_a_cut_finishes_the_task(project, registry, tmp_path):
    _, _, path = recorded_run(project, registry)
    lines = path.read_bytes().split(b"\n")
    # Cut right after the edit_file call was recorded but before its result: the step in flight.
    index = next(i for i, line in enumerate(lines) if b'"tool_call_started"' in line and b'"c2"' in line)
    path.write_bytes(b"\n".join(lines[: index + 1]) + b"\n" + lines[index + 1][:10])
    saved = load_session(path)
    writer = SessionWriter.append_to(path)
    script = ScriptedBackend(SCRIPT)
    for event in saved.events:
        if event.type == "assistant_message":
            script.next_entry(event.purpose)
    agent = Agent(script, registry, Settings(), None, writer, session_id="s1")
    agent.restore(saved)
    result = agent.resume()
    writer.close()
    assert result.reason == "finished"
    resumed = load_session(path)
    results = [e for e in resumed.events if e.type == "tool_call_finished"]
    assert [e.call_id for e in results] == ["c1", "c2", "c3", "c4"]
    assert results[1].cancelled and "interrupted" in results[1].output
    assert [e.resumed for e in resumed.events if e.type == "session_started"] == [False, True]


def test_cancelled_turn_is_resumable_with_a_new_message(project, registry):
    slow = [
        step("Read.", call("read_file", "c1", path="calc.py")),
        {**step("y" * 3000), "delay": 0.02},  # 5 s of streaming: the cancel below always lands inside it
        step("Done.", call("finish", "c2", summary="ok")),
    ]
    writer = SessionWriter.create(project, header(project))
    agent = Agent(ScriptedBackend(slow), registry, Settings(), None, writer, session_id="s1")
    # Cancel once the slow step has streamed something, however slowly this machine got there.
    agent.sinks.append(lambda event: event.type == "reasoning_delta" and "y" in event.text and agent.cancel())
    assert agent.run("task").reason == "cancelled"
    writer.close()
    saved = load_session(writer.path)
    again = Agent(
        ScriptedBackend(slow[2:]), registry, Settings(), None, SessionWriter.append_to(writer.path), session_id="s1"
    )
    again.restore(saved)
    assert again.conversation.items == agent.conversation.items
    with pytest.raises(ValueError, match="finished"):
        again.resume()
    assert again.send("go on").reason == "finished"
