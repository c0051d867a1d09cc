"""The loop with the scripted backend, in a real git workspace with the real tools."""

from __future__ import annotations

import time

from agent_testkit import call, step
from dsagent.agent import Agent, ApprovalDecision
from dsagent.agent.events import parse_event
from dsagent.agent.scripted import ScriptedBackend
from dsagent.config import Settings

DSML = "｜DSML｜"


def settings(**agent) -> Settings:
    return Settings(agent=agent)


def run(script, registry, cfg=None, approve=None, task="fix add()"):
    events = []
    backend = ScriptedBackend(script)
    agent = Agent(backend, registry, cfg or settings(), approve, events.append)
    result = agent.run(task)
    return agent, backend, events, result


def of(events, kind):
    return [e for e in events if e.type == kind]


def test_tool_results_feed_back_and_finish_ends_the_run(workspace, registry):
    script = [
        step("Read the code.", call("read_file", "c1", path="calc.py")),
        step(
            "add() subtracts.",
            call("edit_file", "c2", path="calc.py", old_string="return a - b", new_string="return a + b"),
        ),
        step("Done.", call("finish", "c3", summary="add() now adds")),
        step("never reached", content="unused"),
    ]
    agent, backend, events, result = run(script, registry)
    assert (result.reason, result.summary, result.steps) == ("finished", "add() now adds", 3)
    assert "return a + b" in (workspace.root / "calc.py").read_text()
    assert "+    return a + b" in workspace.patch()
    # Step 2 saw step 1's real result; step 3 saw the edit's diff.
    second = backend.requests[1].messages
    assert second[-1] == {"role": "tool", "tool_call_id": "c1", "content": of(events, "tool_call_finished")[0].output}
    assert "return a - b" in second[-1]["content"]
    assert "+    return a + b" in backend.requests[2].messages[-1]["content"]
    # Every event survives a JSON round trip through the documented schema.
    for event in events:
        assert parse_event(event.model_dump_json()) == event
    kinds = [e.type for e in events]
    assert kinds[:3] == ["session_started", "turn_started", "step_started"]
    assert kinds[-1] == "turn_finished"
    started, finished = of(events, "tool_call_started"), of(events, "tool_call_finished")
    assert [e.call_id for e in started] == [e.call_id for e in finished] == ["c1", "c2", "c3"]
    assert all(e.duration >= 0 and e.started_at > 0 for e in finished)
    assert "".join(e.text for e in of(events, "reasoning_delta")) == "Read the code.add() subtracts.Done."


def test_malformed_calls_are_answered_and_the_run_continues(registry):
    bad_dsml = (
        f'Let me look.</think>\n\n<{DSML}function_calls>\n<{DSML}invoke name="read_file">\n'
        f'<{DSML}parameter name="pathx" string="true">calc.py</{DSML}parameter>\n</{DSML}invoke>\n'
        f"</{DSML}function_calls><｜end▁of▁sentence｜>"
    )
    bad_json = call("read_file", "j1")
    bad_json["function"]["arguments"] = '{"path": "calc.py"'
    script = [
        {"raw": bad_dsml},
        step("Arguments again.", bad_json, call("no_such_tool", "u1", x=1)),
        step("Now properly.", call("read_file", "ok1", path="calc.py")),
        step("Fine.", content="add() subtracts instead of adding."),
    ]
    _, backend, events, result = run(script, registry)
    assert result.reason == "answered" and result.steps == 4
    finished = of(events, "tool_call_finished")
    assert [e.ok for e in finished] == [False, False, False, True]
    assert "path" in finished[0].output and "missing" in finished[0].output
    assert "not valid JSON" in finished[1].output
    assert "unknown tool 'no_such_tool'" in finished[2].output
    # The model read each error as the result of its call.
    assert backend.requests[1].messages[-1]["content"] == finished[0].output


def test_limits_end_the_run_with_their_reason(registry):
    loop = [step(f"Look {i}.", call("list_dir", f"l{i}", path=".", depth=i % 3 + 1)) for i in range(10)]
    _, _, events, result = run(loop, registry, settings(max_steps=3))
    assert (result.reason, result.steps) == ("max_steps", 3)
    assert of(events, "turn_finished")[0].reason == "max_steps"

    _, _, _, result = run(loop, registry, settings(max_generated_tokens=100))
    assert result.reason == "max_generated_tokens" and result.generated_tokens >= 100 and result.steps < 10

    slow = [{**s, "delay": 0.05} for s in loop]
    started = time.monotonic()
    _, _, _, result = run(slow, registry, settings(max_wall_time=0.5))
    assert result.reason == "max_wall_time" and time.monotonic() - started < 5


def test_a_repeated_failing_call_gets_one_note_then_the_run_stops(registry):
    same = lambda i: step(f"Try {i}.", call("read_file", f"r{i}", path="missing.py"))  # noqa: E731
    _, _, events, result = run([same(1), same(2), same(3), same(4)], registry)
    finished = of(events, "tool_call_finished")
    assert result.reason == "repeated_failure" and len(finished) == 3
    assert "has failed before" not in finished[0].output
    assert "has failed before" in finished[1].output
    assert len(of(events, "notice")) == 1


def test_calls_after_finish_are_answered_but_not_run(workspace, registry):
    script = [
        step("Done.", call("finish", "f1", summary="ok"), call("write_file", "w1", path="late.py", content="x = 1\n"))
    ]
    _, _, events, result = run(script, registry)
    assert result.reason == "finished"
    assert not (workspace.root / "late.py").exists()
    assert "not run" in of(events, "tool_call_finished")[1].output


def test_approval_policies(workspace, registry):
    edit = lambda i: step("Edit.", call("write_file", f"w{i}", path=f"new{i}.py", content="x = 1\n"))  # noqa: E731
    read = step("Read.", call("read_file", "rd", path="calc.py"))
    done = step("Stop.", content="done")

    _, _, events, _ = run([edit(1), read, done], registry, settings(approval="read-only"))
    assert not (workspace.root / "new1.py").exists()
    assert "read-only" in of(events, "tool_call_finished")[0].output
    assert of(events, "tool_call_finished")[1].ok  # reading is allowed

    asked = []

    def approve(request):
        asked.append(request.name)
        return (
            ApprovalDecision(choice="deny", note="not that file")
            if len(asked) == 1
            else ApprovalDecision(choice="session")
        )

    _, _, events, _ = run([edit(2), edit(3), edit(4), read, done], registry, settings(approval="ask"), approve)
    assert asked == ["write_file", "write_file"]  # the third was allowed for the session
    assert not (workspace.root / "new2.py").exists()
    assert (workspace.root / "new3.py").exists() and (workspace.root / "new4.py").exists()
    denied = of(events, "tool_call_finished")[0].output
    assert "denied" in denied and "not that file" in denied
    assert [d.by for d in of(events, "approval_decided")] == ["user", "user", "session"]


def test_cancel_during_generation_keeps_the_conversation_whole(registry):
    slow = [step("x" * 400, call("read_file", "c1", path="calc.py"), delay=0.02)]
    events = []
    agent = Agent(ScriptedBackend(slow), registry, settings(), None, events.append)
    # Cancel after the third chunk, not on a timer: a loaded machine may not have streamed anything yet.
    agent.sinks.append(lambda event: len(of(events, "reasoning_delta")) == 3 and agent.cancel())
    result = agent.run("task")
    assert result.reason == "cancelled"
    message = of(events, "assistant_message")[0].message
    assert "tool_calls" not in message and 0 < len(message["reasoning_content"]) < 400
    assert agent.conversation.pending_calls() == [] and agent.conversation.finished
