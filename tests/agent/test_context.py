"""The context budget: sessions driven well past a small `model.max_context` complete, every prompt fits,
elided outputs come back through read_output, and older steps turn into a "done / next" note."""

from __future__ import annotations

from agent_testkit import call, commit_project, step
from dsagent.agent import Agent
from dsagent.agent.conversation import PROGRESS_MARK
from dsagent.agent.scripted import ScriptedBackend
from dsagent.config import Settings
from dsagent.sandbox.workspace import Workspace
from dsagent.tools.registry import default_registry

BIG = "".join(f"def function_{i}(value):  # line {i} of a long generated module\n" for i in range(1, 401))


def run(script, repo, tmp_path, max_context):
    commit_project(repo, {"big.py": BIG})
    with Workspace(repo) as ws:
        registry = default_registry(ws.root, index_dir=tmp_path / "index")
        settings = Settings(model={"max_context": max_context})
        events = []
        backend = ScriptedBackend(script)
        agent = Agent(backend, registry, settings, None, events.append)
        result = agent.run("Read big.py in parts and report.")
    return agent, backend, events, result


def fits(agent, backend):
    counts = [backend.count_tokens(r.messages) for r in backend.requests if r.purpose == "step"]
    return counts, all(count <= agent.budget.limit for count in counts)


def test_old_outputs_are_elided_and_read_back(project, tmp_path):
    reads = [
        step(f"Part {i}.", call("read_file", f"r{i}", path="big.py", start_line=i * 50 + 1, end_line=i * 50 + 50))
        for i in range(8)
    ]
    script = [
        *reads,
        step("Recall part 0.", call("read_output", "back", call_id="r0", start_line=40, end_line=45)),
        step("Done.", call("finish", "f", summary="read it all")),
    ]
    agent, backend, events, result = run(script, project, tmp_path, max_context=6000)
    assert result.reason == "finished" and result.steps == 10
    counts, ok = fits(agent, backend)
    assert ok, counts
    assert sum(len(r.messages[-1].get("content", "")) for r in backend.requests) > 6000 * 3  # well past it
    compactions = [e for e in events if e.type == "context_compacted"]
    elided = [call_id for e in compactions for call_id in e.elided]
    assert "r0" in elided and len(compactions) < len(reads)  # in chunks, not one output per step
    assert all(e.prompt_tokens_after < e.prompt_tokens_before for e in compactions)
    last = backend.requests[-1].messages
    pointer = next(m["content"] for m in last if m.get("tool_call_id") == "r0")
    assert 'read_output(call_id="r0")' in pointer and "function_40" not in pointer
    recalled = [e for e in events if e.type == "tool_call_finished" and e.call_id == "back"][0]
    assert recalled.ok and "def function_40(value)" in recalled.output and "function_46" not in recalled.output


def test_older_steps_become_a_done_next_note(project, tmp_path):
    thoughts = "I keep a long chain of careful reasoning about the module here. " * 25
    steps = [step(f"{i}: {thoughts}", call("list_dir", f"l{i}", path=".", depth=1 + i % 2)) for i in range(12)]
    note = "Done:\n- listed the repository twelve times\nNext:\n- finish"
    script = [
        *steps,
        step("Last step.", call("finish", "f", summary="done")),
        {"role": "assistant", "purpose": "summary", "content": note},
    ]
    agent, backend, events, result = run(script, project, tmp_path, max_context=5000)
    assert result.reason == "finished" and result.steps == 13
    counts, ok = fits(agent, backend)
    assert ok, counts
    summaries = [e for e in events if e.type == "context_compacted" and e.summary is not None]
    assert summaries and summaries[0].summary == note  # the model's own note (scripted here)
    assert [e.purpose for e in events if e.type == "assistant_message"].count("summary") == len(summaries)
    final = backend.requests[-1].messages
    user = final[1]["content"]
    assert user.startswith("Read big.py in parts and report.") and PROGRESS_MARK.strip() in user
    # The newest step keeps its reasoning: the current turn's reasoning is the last thing to go.
    assert final[-2]["role"] == "assistant" and final[-2]["reasoning_content"].startswith("11: ")
    # Later summaries had no scripted note left: the loop wrote a mechanical one and went on.
    assert all(e.summary.startswith(("Done", note)) for e in summaries)
