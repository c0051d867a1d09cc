"""Property tests: random conversations encode and parse back; any split of a completion gives the same events."""

from __future__ import annotations

import json

from dsagent.model.dsml import SPECIAL_TOKENS, StreamParser, coalesce, encode_messages, generation_prompt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TRICKY = list("\"'\n\t <>/{}[]:,=\\&`") + ["二", "é", "🙂", "\u200b", "<think", "｜", "DSML", "\n\n<"]


def _clean(text: str) -> bool:
    return not any(token in text for token in SPECIAL_TOKENS)


# Text the format can carry: anything without a special token (the format has no escaping).
texts = st.lists(st.sampled_from(TRICKY) | st.characters(exclude_categories=("Cs",)), max_size=12).map("".join)
texts = texts.filter(_clean)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | floats | texts
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=6
)


@st.composite
def tool_calls(draw) -> list[dict]:
    calls = []
    for _ in range(draw(st.integers(1, 3))):
        args = draw(st.dictionaries(names, json_values, max_size=4))
        function = {"name": draw(names), "arguments": json.dumps(args, ensure_ascii=False)}
        calls.append({"id": f"call_{len(calls)}", "type": "function", "function": function})
    return calls


@st.composite
def conversations(draw) -> list[dict]:
    tools = [{"type": "function", "function": {"name": "t", "description": draw(texts), "parameters": {}}}]
    messages: list[dict] = [{"role": "system", "content": draw(texts), "tools": tools}]
    for _ in range(draw(st.integers(1, 2))):
        messages.append({"role": draw(st.sampled_from(["user", "user", "developer"])), "content": draw(texts) + "?"})
        for _ in range(draw(st.integers(0, 2))):
            calls = draw(tool_calls())
            step = {"role": "assistant", "content": draw(texts), "reasoning_content": draw(texts), "tool_calls": calls}
            messages.append(step)
            messages += [{"role": "tool", "tool_call_id": c["id"], "content": draw(texts)} for c in calls]
        messages.append({"role": "assistant", "content": draw(texts), "reasoning_content": draw(texts)})
    return messages


def parse(text: str, thinking: bool, cuts: list[int] = ()) -> tuple[list, dict]:
    parser = StreamParser(thinking=thinking)
    events, start = [], 0
    for cut in sorted(cuts) + [len(text)]:
        events += parser.feed(text[start:cut])
        start = cut
    events += parser.finish()
    message = parser.message()
    for call in message["tool_calls"]:
        del call["id"]
    return coalesce(events), message


def expected(message: dict, thinking: bool) -> dict:
    return {
        "role": "assistant",
        "content": message.get("content") or "",
        "reasoning_content": message["reasoning_content"] if thinking else "",
        "tool_calls": [{"type": "function", "function": c["function"]} for c in message.get("tool_calls", [])],
    }


@SETTINGS
@given(conversations(), st.booleans())
def test_conversations_encode_and_parse_back(messages, thinking):
    for k, message in enumerate(messages):
        if message["role"] == "assistant":
            completion = encode_messages([message], thinking=thinking, context=messages[:k])
            events, parsed = parse(completion, thinking)
            assert parsed == expected(message, thinking)
            assert [type(e).__name__ for e in events].count("FormatError") == 0


@SETTINGS
@given(conversations(), st.booleans())
def test_prompt_plus_completion_is_the_next_prompt(messages, thinking):
    """Within a turn the prompt only grows, so the engine reuses its KV cache across tool calls."""
    for k in range(1, len(messages)):
        step = encode_messages([messages[k]], thinking=thinking, context=messages[:k])
        grown = encode_messages(messages[: k + 1], thinking=thinking)
        if messages[k]["role"] not in ("user", "developer"):
            assert encode_messages(messages[:k], thinking=thinking) + step == grown
        if messages[k]["role"] == "assistant":
            assert generation_prompt(messages[:k], thinking) + step == grown


@SETTINGS
@given(conversations(), st.booleans(), st.data())
def test_any_split_gives_the_same_events(messages, thinking, data):
    for k, message in enumerate(messages):
        if message["role"] == "assistant":
            completion = encode_messages([message], thinking=thinking, context=messages[:k])
            cuts = data.draw(st.lists(st.integers(0, len(completion)), max_size=12))
            assert parse(completion, thinking, cuts) == parse(completion, thinking)


def test_every_single_character_split(shared_dir):
    """The fixture's completions fed one character at a time."""
    case = json.loads((shared_dir / "fixtures/dsml/official_input.json").read_text(encoding="utf-8"))
    messages = case["messages"]
    for k, message in enumerate(messages):
        if message["role"] == "assistant":
            completion = encode_messages([message], context=messages[:k])
            whole = parse(completion, True)
            assert parse(completion, True, list(range(len(completion)))) == whole
            assert whole[1] == expected(message, True)
