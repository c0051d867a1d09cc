"""Fuzz: 10,000 mutated completions give events or structured errors, never an exception."""

from __future__ import annotations

import json
import random
import re

import pytest
from dsagent.model.dsml import (
    EOS_TOKEN,
    SPECIAL_TOKENS,
    FormatError,
    MessageEnd,
    StreamParser,
    ToolCallError,
    ToolCallFinished,
    ToolCallStarted,
    coalesce,
    encode_messages,
)

D = "｜DSML｜"
PIECES = [
    *SPECIAL_TOKENS,
    *(f"{a}{D}{b}" for a in ("<", "</") for b in ("function_calls", "invoke", "parameter")),
    ">", "\n", "\n\n", '"', ' name="', ' string="true"', ' string="false"', "{", "[1,", "<", "｜", "\ufffd", "é",
]  # fmt: skip
SPLIT = re.compile("(" + "|".join(re.escape(p) for p in sorted(PIECES, key=len, reverse=True)) + ")")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {}, "required": ["location", "date"]},
        },
    }
]


def base_completions(shared_dir) -> list[str]:
    case = json.loads((shared_dir / "fixtures/dsml/official_input.json").read_text(encoding="utf-8"))
    messages = case["messages"]
    texts = [encode_messages([m], context=messages[:k]) for k, m in enumerate(messages) if m["role"] == "assistant"]
    args = {"location": "Hangzhou", "date": {"day": [16, 17.5, None, True]}, "note": 'a "b"\n<c>'}
    call = {"id": "x", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(args)}}
    mixed = {"role": "assistant", "content": "Let me check.\n", "reasoning_content": "think", "tool_calls": [call] * 2}
    return texts + [encode_messages([mixed], context=[{"role": "user", "content": "q"}])]


def mutate(text: str, rng: random.Random) -> str:
    parts = [p for p in SPLIT.split(text) if p]
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i, j = rng.randrange(len(parts) or 1), rng.randrange(len(parts) or 1)
        if not parts or op == 0:
            parts.insert(i, rng.choice(PIECES))
        elif op == 1:
            del parts[i]
        elif op == 2:
            parts.insert(i, parts[i])
        elif op == 3:
            parts[i], parts[j] = parts[j], parts[i]
        elif op == 4:
            parts[i] = "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randint(1, 5)))
        else:
            parts = parts[:i]
    text = "".join(parts)
    if text and rng.random() < 0.3:
        text = text[: rng.randrange(len(text))]
    return text


def run(text: str, thinking: bool, tools, cuts: list[int]) -> tuple[list, dict]:
    parser = StreamParser(tools, thinking=thinking)
    events, start = [], 0
    for cut in sorted(cuts) + [len(text)]:
        events += parser.feed(text[start:cut])
        start = cut
    events += parser.finish()
    return coalesce(events), parser.message()


def check(events: list, message: dict) -> None:
    assert events and isinstance(events[-1], MessageEnd) and sum(isinstance(e, MessageEnd) for e in events) == 1
    assert not any(isinstance(e, FormatError) and e.message.startswith("internal") for e in events), events
    ends = [e.index for e in events if isinstance(e, ToolCallFinished | ToolCallError)]
    assert ends == list(range(len(message["tool_calls"])))  # every call ends exactly once, in order
    for event in events:
        if isinstance(event, ToolCallStarted | ToolCallFinished):
            assert message["tool_calls"][event.index]["function"]["name"] == event.name
    for call in message["tool_calls"]:
        assert isinstance(json.loads(call["function"]["arguments"]), dict)
    for text in (message["content"], message["reasoning_content"]):
        assert not any(token in text for token in SPECIAL_TOKENS)
    # Whatever was parsed can go back into the conversation.
    encode_messages([message], context=[{"role": "user", "content": "q"}])


@pytest.mark.slow  # about 4 s of CPU
def test_ten_thousand_mutated_completions(shared_dir):
    rng = random.Random(20251123)
    bases = base_completions(shared_dir)
    kinds: dict[str, int] = {}
    for _ in range(10_000):
        text = mutate(rng.choice(bases), rng)
        thinking, tools = rng.random() < 0.8, rng.choice([None, TOOLS])
        cuts = [rng.randrange(len(text) + 1) for _ in range(rng.randint(0, 4))]
        events, message = run(text, thinking, tools, cuts)
        check(events, message)
        whole_events, whole_message = run(text, thinking, tools, [])
        assert whole_events == events, text
        for event in events:
            kinds[type(event).__name__] = kinds.get(type(event).__name__, 0) + 1
    # The mutations reach every kind of outcome, so the checks above were exercised.
    assert {"ToolCallFinished", "ToolCallError", "FormatError", "ContentDelta", "ReasoningDelta"} <= set(kinds)


def test_random_bytes_never_raise():
    rng = random.Random(7)
    for _ in range(300):
        text = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200))).decode("utf-8", errors="replace")
        text = text + EOS_TOKEN if rng.random() < 0.5 else text
        check(*run(text, rng.random() < 0.5, TOOLS, [rng.randrange(len(text) + 1)]))
