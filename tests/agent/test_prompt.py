"""The exact prompt of every step: the conversation encoded by DSML, reasoning kept within a turn and
dropped after a new user message; the system prompt with the repository's AGENTS.md."""

from __future__ import annotations

from agent_testkit import call, commit_project, step
from dsagent.agent import Agent
from dsagent.agent.prompt import system_prompt
from dsagent.agent.scripted import ScriptedBackend
from dsagent.config import Settings
from dsagent.model.dsml import THINK_START, encode_messages, generation_prompt


def test_every_step_sees_exactly_the_encoded_conversation(registry):
    script = [
        step("R1: read calc first.", call("read_file", "c1", path="calc.py")),
        step("R2: it subtracts.", content="add() subtracts."),
        step("R3: now mul.", call("read_file", "c2", path="calc.py", start_line=5)),
        step("R4: mul is fine.", call("finish", "c3", summary="mul multiplies")),
    ]
    events = []
    backend = ScriptedBackend(script)
    agent = Agent(backend, registry, Settings(), None, events.append)
    agent.run("What does add do?")
    agent.send("And mul?")
    outputs = {e.call_id: e.output for e in events if e.type == "tool_call_finished"}

    system = {"role": "system", "content": agent.system_prompt, "tools": agent.registry.schemas()}
    user1, user2 = {"role": "user", "content": "What does add do?"}, {"role": "user", "content": "And mul?"}
    a = [{**m, "role": "assistant"} for m in script]
    tool = lambda cid: {"role": "tool", "tool_call_id": cid, "content": outputs[cid]}  # noqa: E731
    expected = [
        [system, user1],
        [system, user1, a[0], tool("c1")],
        [system, user1, a[0], tool("c1"), a[1], user2],
        [system, user1, a[0], tool("c1"), a[1], user2, a[2], tool("c2")],
    ]
    assert len(backend.requests) == 4
    for request, conversation in zip(backend.requests, expected, strict=True):
        assert request.messages == conversation
        assert generation_prompt(request.messages) == encode_messages(conversation)  # ends with the opener
    prompts = [generation_prompt(r.messages) for r in backend.requests]
    assert prompts[1].endswith(THINK_START) and "R1: read calc first." in prompts[1]
    # A new user message drops the first turn's reasoning; the second turn's stays while it runs.
    assert "R1" not in prompts[2] and "R2" not in prompts[2]
    assert "R3: now mul." in prompts[3] and "R1" not in prompts[3]
    assert "add() subtracts." in prompts[3]  # answers stay, only reasoning goes


def test_system_prompt_fills_placeholders_and_adds_agents_md(project):
    plain = system_prompt(project, "ask")
    assert "{" not in plain.replace("{{", "") and project.name in plain
    assert "approves each edit" in plain and "AGENTS.md" not in plain
    commit_project(project, {"AGENTS.md": "Run tests with `pytest -q`. Never touch vendor/.\n"})
    with_rules = system_prompt(project, "auto")
    assert "Instructions from the repository (AGENTS.md)" in with_rules
    assert "Never touch vendor/." in with_rules
