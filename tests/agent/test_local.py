"""The local backend on the tiny parity checkpoint: each step prefills only what the prompt gained, and
a new user message cuts the KV cache back to the first changed token instead of re-prefilling."""

from __future__ import annotations

import threading

import pytest
from agent_testkit import call, step
from dsagent.agent import Agent
from dsagent.agent.backend import CompletionRequest, encoded_prompt
from dsagent.agent.local import LocalBackend
from dsagent.agent.scripted import ScriptedBackend
from dsagent.config import SamplingSettings, Settings
from dsagent.model.dsml import ASSISTANT_TOKEN
from dsagent.tools.base import Registry

SCRIPT = [
    step("Read.", call("read_file", "c1", path="calc.py", end_line=2)),
    step("Fix.", call("edit_file", "c2", path="calc.py", old_string="a - b", new_string="a + b")),
    step("Done.", content="Fixed."),
    step("Mul.", call("read_file", "c3", path="calc.py", start_line=5)),
    step("Ok.", call("finish", "c4", summary="ok")),
]


@pytest.mark.slow
def test_steps_prefill_only_new_tokens_and_a_new_turn_cuts_back(tiny_engine, registry, workspace):
    tools = Registry([registry[name] for name in ("read_file", "edit_file", "finish")])
    backend = LocalBackend(tiny_engine, script=ScriptedBackend(SCRIPT))
    seen: list[tuple] = []  # (prompt text, completion text, usage) per step
    before_turn: list[list[int]] = []

    def sink(event):
        if event.type == "turn_started":
            before_turn.append(list(backend.cache.session.tokens))
        if event.type == "usage":
            seen.append((backend.last_prompt, backend.cache.segments[-1][0], event))

    agent = Agent(backend, tools, Settings(), None, sink, system="You fix small bugs.")
    assert agent.run("fix add").reason == "answered"
    assert "a + b" in (workspace.root / "calc.py").read_text()
    assert agent.send("and mul?").reason == "finished"
    assert len(seen) == 5
    tokenizer = tiny_engine.tokenizer

    first = seen[0][2]
    assert (first.reused, first.prefilled, first.prompt_tokens) == (0, first.prompt_tokens, first.prompt_tokens)
    for k in (1, 2, 4):  # steps that follow a tool result within the same turn
        (prev_prompt, prev_completion, _), (prompt, _, usage) = seen[k - 1], seen[k]
        assert prompt.startswith(prev_prompt + prev_completion)  # the model's own tokens are reused as written
        gained = prompt[len(prev_prompt + prev_completion) :]
        assert gained.startswith("\n\n<function_results>") and gained.endswith("<think>")
        assert usage.prefilled == len(tokenizer.encode(gained))
        assert usage.reused == usage.prompt_tokens - usage.prefilled
        assert usage.generated > 0 and usage.tokens_per_s > 0
    # Turn 2: the first turn's reasoning leaves the prompt, so the cache goes back to its first user message.
    prompt, _, usage = seen[3]
    kept_text = prompt[: prompt.index(ASSISTANT_TOKEN) + len(ASSISTANT_TOKEN)]
    assert usage.reused == len(tokenizer.encode(kept_text))
    assert 0 < usage.reused < len(before_turn[1]) and usage.prefilled == usage.prompt_tokens - usage.reused
    assert usage.prefilled < usage.prompt_tokens // 2  # far less than a full re-prefill
    assert backend.cache.session.tokens[: usage.reused] == before_turn[1][: usage.reused]


@pytest.mark.slow
def test_free_generation_streams_and_counts(tiny_engine):
    backend = LocalBackend(tiny_engine)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    sampling = SamplingSettings(temperature=0.0)
    deltas = []
    completion = backend.complete(
        CompletionRequest(messages, 6, sampling), lambda k, t: deltas.append(t), threading.Event()
    )
    usage = completion.usage
    prompt_ids = tiny_engine.tokenizer.encode(encoded_prompt(messages))
    assert usage.prompt_tokens == usage.prefilled == len(prompt_ids) and usage.reused == 0
    assert 1 <= usage.generated <= 6 and completion.stopped in ("end", "length")
    assert backend.count_tokens(messages) == len(prompt_ids)
    # Greedy decoding is deterministic: the same request from a fresh session writes the same text.
    again = LocalBackend(tiny_engine).complete(
        CompletionRequest(messages, 6, sampling), lambda k, t: None, threading.Event()
    )
    assert again.message == completion.message
    stopped = threading.Event()
    stopped.set()
    cancelled = LocalBackend(tiny_engine).complete(CompletionRequest(messages, 6, sampling), lambda k, t: None, stopped)
    assert cancelled.stopped == "cancelled" and cancelled.usage.generated <= 1


@pytest.mark.slow
def test_a_reply_cut_at_max_new_tokens_ends_the_turn_saying_so(tiny_engine, registry):
    # Greedy, so the same 4 tokens each run: a reply cut mid-thought is not an answer.
    settings = Settings(model={"sampling": {"max_new_tokens": 4, "temperature": 0.0}})
    events = []
    tools = Registry([registry["finish"]])
    agent = Agent(LocalBackend(tiny_engine), tools, settings, None, events.append, system="Hi.")
    result = agent.run("hi")
    assert result.reason == "max_new_tokens" and result.generated_tokens == 4
    assert "model.sampling.max_new_tokens (4 tokens)" in result.summary
    assert events[-1].type == "turn_finished" and events[-1].reason == "max_new_tokens"
