"""DSML encoding against the official fixture and the official rules; round trips through the parser."""

from __future__ import annotations

import json

import pytest
from dsagent.model.dsml import (
    EOS_ID,
    EOS_TOKEN,
    STOP_TOKEN_IDS,
    MessageEnd,
    ReasoningDelta,
    StreamParser,
    ToolCallFinished,
    ToolCallStarted,
    assistant_prefix,
    encode_messages,
    generation_prompt,
    parse_completion,
    tool_schemas_block,
)


@pytest.fixture
def fixture_case(shared_dir):
    folder = shared_dir / "fixtures" / "dsml"
    case = json.loads((folder / "official_input.json").read_text(encoding="utf-8"))
    expected = (folder / "official_output.txt").read_text(encoding="utf-8")
    assert expected.endswith("\n") and not expected.endswith("\n\n")
    messages = [dict(case["messages"][0], tools=case["tools"]), *case["messages"][1:]]
    return messages, case["tools"], expected[:-1]  # the official test strips the one trailing newline


def as_parsed(message: dict, with_reasoning: bool = True) -> dict:
    """What the parser gives back for `message`: no tool-call ids, empty fields as ''/[]."""
    calls = [{"type": "function", "function": dict(c["function"])} for c in message.get("tool_calls") or []]
    return {
        "role": "assistant",
        "content": message.get("content") or "",
        "reasoning_content": (message.get("reasoning_content") or "") if with_reasoning else "",
        "tool_calls": calls,
    }


def without_ids(message: dict) -> dict:
    return {**message, "tool_calls": [{k: v for k, v in c.items() if k != "id"} for c in message["tool_calls"]]}


def test_official_fixture_encodes_byte_equal(fixture_case):
    messages, _, expected = fixture_case
    assert encode_messages(messages, thinking=True, drop_thinking=True) == expected


def test_drop_thinking_flag_does_not_change_the_official_rendering(fixture_case):
    messages, _, expected = fixture_case
    assert encode_messages(messages, drop_thinking=False) == expected


@pytest.mark.parametrize("index", [4, 7])
def test_fixture_messages_round_trip(fixture_case, index):
    """The official round trip: encode messages[i] with messages[:i] as context, parse it back."""
    messages, tools, _ = fixture_case
    text = encode_messages([messages[index]], context=messages[:index])
    assert text.endswith(EOS_TOKEN) and not text.startswith("<｜begin")
    events, parsed = parse_completion(text, tools=tools)
    assert without_ids(parsed) == as_parsed(messages[index])
    assert isinstance(events[0], ReasoningDelta) and isinstance(events[-1], MessageEnd)


def test_every_fixture_assistant_message_round_trips(fixture_case):
    messages, tools, _ = fixture_case
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            _, parsed = parse_completion(encode_messages([message], context=messages[:index]), tools=tools)
            assert without_ids(parsed) == as_parsed(message), index


def test_fixture_tool_call_events(fixture_case):
    messages, tools, _ = fixture_case
    events, _ = parse_completion(encode_messages([messages[4]], context=messages[:4]), tools=tools)
    calls = [e for e in events if isinstance(e, ToolCallStarted | ToolCallFinished)]
    written = [call["function"]["arguments"] for call in messages[4]["tool_calls"]]  # the fixture's own strings
    assert calls == [
        ToolCallStarted(index=0, name="get_weather"),
        ToolCallFinished(
            index=0,
            name="get_weather",
            arguments={"location": "Hangzhou", "date": "2024-01-16"},
            arguments_json=written[0],
        ),
        ToolCallStarted(index=1, name="get_weather"),
        ToolCallFinished(
            index=1,
            name="get_weather",
            arguments={"location": "Beijing", "date": "2024-01-16"},
            arguments_json=written[1],
        ),
    ]


def test_prompt_grows_append_only_within_a_turn(fixture_case):
    """After the last user message the next prompt = this prompt + the completion (the KV cache is reused)."""
    messages, _, _ = fixture_case
    for k in range(9, len(messages)):
        if messages[k]["role"] == "assistant":
            prompt = generation_prompt(messages[:k])
            assert prompt.endswith("<think>")
            completion = encode_messages([messages[k]], context=messages[:k])
            assert prompt + completion == encode_messages(messages[: k + 1])


def test_new_user_message_drops_earlier_reasoning(fixture_case):
    messages, _, _ = fixture_case
    first_turn = encode_messages(messages[:8])
    assert messages[2]["reasoning_content"] in first_turn
    assert messages[2]["reasoning_content"] not in encode_messages(messages[:9])


def test_chat_mode():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"n": 3, "s": "x"}'}}
    messages = [
        {"role": "system", "content": "S", "tools": tools},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "", "reasoning_content": "hidden", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "R"},
        {"role": "assistant", "content": "A", "reasoning_content": "hidden"},
    ]
    calls = (
        '\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="f">\n'
        '<｜DSML｜parameter name="n" string="false">3</｜DSML｜parameter>\n'
        '<｜DSML｜parameter name="s" string="true">x</｜DSML｜parameter>\n'
        "</｜DSML｜invoke>\n</｜DSML｜function_calls>"
    )
    expected = (
        "<｜begin▁of▁sentence｜>S\n\n" + tool_schemas_block(tools) + "<｜User｜>U1<｜Assistant｜></think>"
        + calls + EOS_TOKEN + "\n\n<function_results>\n<result>R</result>\n</function_results>\n\n</think>"
        + "A" + EOS_TOKEN
    )  # fmt: skip
    assert encode_messages(messages, thinking=False) == expected
    assert assistant_prefix(messages[:4], thinking=False) == ""
    _, parsed = parse_completion(encode_messages(messages[2:3], thinking=False, context=messages[:2]), thinking=False)
    assert without_ids(parsed) == as_parsed(messages[2], with_reasoning=False)


def test_developer_message_and_response_format():
    # Official rule: a developer turn carries the tools, then the response format, then the request.
    tools = [{"type": "function", "function": {"name": "g", "description": "G", "parameters": {}}}]
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}
    messages = [{"role": "developer", "content": "do it", "tools": tools, "response_format": fmt}]
    expected = (
        "<｜begin▁of▁sentence｜><｜User｜>\n\n" + tool_schemas_block(tools)
        + '\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n'
        + json.dumps(fmt, ensure_ascii=False) + "\n\n# The user's message is: do it<｜Assistant｜><think>"
    )  # fmt: skip
    assert encode_messages(messages) == expected
    with pytest.raises(ValueError, match="developer"):
        encode_messages([{"role": "developer", "content": ""}])


def test_system_messages_concatenate_and_carry_response_format():
    fmt = {"type": "json_object"}
    messages = [
        {"role": "system", "content": "A"},
        {"role": "system", "content": "B", "response_format": fmt},
        {"role": "user", "content": "Q"},
    ]
    schema_text = "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n"
    expected = f'<｜begin▁of▁sentence｜>AB\n\n{schema_text}{{"type": "json_object"}}<｜User｜>Q<｜Assistant｜><think>'
    assert encode_messages(messages) == expected
    assert encode_messages(messages, add_bos=False) == expected.removeprefix("<｜begin▁of▁sentence｜>")


def test_tools_block_lists_one_json_line_per_tool(fixture_case):
    _, tools, expected = fixture_case
    block = tool_schemas_block(tools)
    assert block.startswith("## Tools\n\n") and block.endswith("</functions>\n") and block in expected
    lines = block.split("<functions>\n")[1].removesuffix("</functions>\n").splitlines()
    assert [json.loads(line) for line in lines] == [t["function"] for t in tools]


def test_assistant_prefix_rules():
    call = {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    user = {"role": "user", "content": "hi"}
    two_calls = {"role": "assistant", "reasoning_content": "r", "tool_calls": [call, {**call, "id": "b"}]}
    result = {"role": "tool", "tool_call_id": "a", "content": "x"}
    assert assistant_prefix([user]) == ""
    assert assistant_prefix([user, two_calls, result, result]) == ""
    assert encode_messages([user, two_calls, result, result]).endswith("</function_results>\n\n<think>")
    with pytest.raises(ValueError, match="1 of 2"):
        assistant_prefix([user, two_calls, result])
    done = {"role": "assistant", "content": "ok", "reasoning_content": "r"}
    assert assistant_prefix([user, done]) == "<｜Assistant｜><think>"
    assert assistant_prefix([{"role": "system", "content": "s"}], thinking=False) == "<｜Assistant｜></think>"


def test_tool_result_without_a_call_is_rejected():
    with pytest.raises(ValueError, match="no assistant tool call"):
        encode_messages([{"role": "user", "content": "u"}, {"role": "tool", "content": "x"}])


def test_arguments_may_be_a_dict_and_values_keep_their_type():
    args = {"s": 'a "quoted"\nline <x>', "n": 1.5, "b": False, "z": None, "o": {"k": [1, "二"]}}
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": args}}
    text = encode_messages([{"role": "assistant", "content": "", "tool_calls": [call]}], context=[{"role": "user"}])
    assert '<｜DSML｜parameter name="o" string="false">{"k": [1, "二"]}</｜DSML｜parameter>' in text
    events, parsed = parse_completion(text)
    assert [e.arguments for e in events if isinstance(e, ToolCallFinished)] == [args]
    assert json.loads(parsed["tool_calls"][0]["function"]["arguments"]) == args


def test_stop_condition_is_end_of_sentence():
    assert STOP_TOKEN_IDS == (EOS_ID,) == (1,)
    parser = StreamParser(thinking=False)
    assert parser.feed("done" + EOS_TOKEN + "ignored")[-1] == MessageEnd()
    assert parser.done and parser.feed("more") == [] and parser.finish() == []
    assert parser.message()["content"] == "done"
