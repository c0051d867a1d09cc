"""The streaming parser on malformed and unusual completions: structured errors, never exceptions."""

from __future__ import annotations

import json

from dsagent.model.dsml import (
    ContentDelta,
    FormatError,
    MessageEnd,
    ReasoningDelta,
    StreamParser,
    ToolCallError,
    ToolCallFinished,
    ToolCallStarted,
    encode_messages,
    parse_completion,
)

D = "｜DSML｜"
EOS = "<｜end▁of▁sentence｜>"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "edit_file",
            "description": "Replace text in a file",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "count": {"type": "integer"}},
                "required": ["path"],
            },
        },
    }
]


def invoke(name: str, *params: tuple[str, str, str]) -> str:
    body = "".join(f'<{D}parameter name="{k}" string="{s}">{v}</{D}parameter>\n' for k, s, v in params)
    return f'<{D}invoke name="{name}">\n{body}</{D}invoke>\n'


def calls(*invokes: str) -> str:
    return f"\n\n<{D}function_calls>\n" + "".join(invokes) + f"</{D}function_calls>"


def only(events, kind):
    return [e for e in events if isinstance(e, kind)]


def test_valid_call_with_typed_values():
    text = "plan</think>" + calls(invoke("edit_file", ("path", "true", "a.py"), ("count", "false", "2"))) + EOS
    events, message = parse_completion(text, TOOLS)
    assert events == [
        ReasoningDelta(text="plan"),
        ToolCallStarted(index=0, name="edit_file"),
        ToolCallFinished(
            index=0,
            name="edit_file",
            arguments={"path": "a.py", "count": 2},
            arguments_json='{"path": "a.py", "count": 2}',  # integers kept as written
        ),
        MessageEnd(),
    ]
    assert message["tool_calls"][0]["function"]["arguments"] == '{"path": "a.py", "count": 2}'


def test_unknown_tool():
    events, message = parse_completion("</think>" + calls(invoke("rm_rf", ("path", "true", "/"))) + EOS, TOOLS)
    (error,) = only(events, ToolCallError)
    assert error.index == 0 and error.name == "rm_rf" and "no tool named 'rm_rf'" in error.message
    assert "edit_file" in error.message  # names the tools that exist
    assert message["tool_calls"][0]["function"]["name"] == "rm_rf"


def test_missing_required_parameter():
    events, _ = parse_completion("</think>" + calls(invoke("edit_file", ("count", "false", "1"))) + EOS, TOOLS)
    (error,) = only(events, ToolCallError)
    assert "missing required parameter(s): path" in error.message


def test_duplicate_parameter_keeps_the_first():
    text = "</think>" + calls(invoke("edit_file", ("path", "true", "a"), ("path", "true", "b"))) + EOS
    events, message = parse_completion(text, TOOLS)
    (error,) = only(events, ToolCallError)
    assert "'path' is given twice" in error.message
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"path": "a"}


def test_non_json_value_in_string_false_parameter():
    text = "</think>" + calls(invoke("edit_file", ("path", "true", "a"), ("count", "false", "two"))) + EOS
    events, message = parse_completion(text, TOOLS)
    (error,) = only(events, ToolCallError)
    assert "'count' has string=\"false\" but its value is not JSON: 'two'" in error.message
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"path": "a", "count": "two"}


def test_one_bad_call_does_not_spoil_the_others():
    text = "</think>" + calls(invoke("nope"), invoke("edit_file", ("path", "true", "x"))) + EOS
    events, message = parse_completion(text, TOOLS)
    assert [type(e).__name__ for e in events if not isinstance(e, ContentDelta)] == [
        "ToolCallStarted", "ToolCallError", "ToolCallStarted", "ToolCallFinished", "MessageEnd"
    ]  # fmt: skip
    assert len(message["tool_calls"]) == 2


def test_unterminated_blocks():
    whole = "r</think>" + calls(invoke("edit_file", ("path", "true", "a.py")))
    cut_in_value = whole[: whole.index("a.py") + 2]
    events, message = parse_completion(cut_in_value, TOOLS)
    (error,) = only(events, ToolCallError)
    assert "ended inside the call" in error.message and message["tool_calls"][0]["function"]["name"] == "edit_file"
    cut_in_tag = whole[: whole.index('name="edit') + 8]
    (error,) = only(parse_completion(cut_in_tag, TOOLS)[0], ToolCallError)
    assert error.name is None and "invoke tag must read" in error.message
    cut_after_invoke = whole[: whole.rindex("</")]
    events, _ = parse_completion(cut_after_invoke, TOOLS)
    assert only(events, ToolCallFinished) and "function_calls" in only(events, FormatError)[0].message
    events, message = parse_completion("still thinking", TOOLS)
    assert only(events, FormatError)[0].message.startswith("the reply ended inside the thinking block")
    assert message["reasoning_content"] == "still thinking"


def test_invoke_not_closed_before_the_next_one():
    unclosed = f'<{D}invoke name="edit_file">\n'
    text = f"</think>\n\n<{D}function_calls>\n" + unclosed + invoke("edit_file") + f"</{D}function_calls>"
    events, message = parse_completion(text, TOOLS)
    errors = only(events, ToolCallError)
    assert "not closed" in errors[0].message and len(message["tool_calls"]) == 2


def test_text_after_the_calls_is_reported_and_dropped():
    text = "</think>" + calls(invoke("edit_file", ("path", "true", "a"))) + "\n\n<function_results>fake" + EOS
    events, message = parse_completion(text, TOOLS)
    assert only(events, ToolCallFinished)
    (error,) = only(events, FormatError)
    assert error.message.startswith("text after the tool calls was ignored: '<function_results>fake'")
    assert "fake" not in json.dumps(message)


def test_special_tokens_in_content_are_reported_and_removed():
    events, message = parse_completion("r</think>hello<｜User｜>world<think>!" + EOS, TOOLS)
    assert [e.message for e in only(events, FormatError)] == [
        "the special token <｜User｜> is not allowed in the answer; it was removed",
        "the special token <think> is not allowed in the answer; it was removed",
    ]
    assert message["content"] == "hello" + "world!"


def test_special_tokens_inside_values_are_kept():
    # The official format has no escaping: a value may hold anything but the parameter's closing tag.
    value = "x = '<think>' + '</think>'"
    events, _ = parse_completion("</think>" + calls(invoke("edit_file", ("path", "true", value))) + EOS, TOOLS)
    assert only(events, ToolCallFinished)[0].arguments == {"path": value}


def test_lenient_whitespace_and_tool_calls_started_inside_thinking():
    text = f'thinking <{D}function_calls>  <{D}invoke  name="edit_file" >\n\n<{D}parameter name="path"  string="true">p'
    text += f"</{D}parameter >   </{D}invoke>\n\n</{D}function_calls>  " + EOS
    events, message = parse_completion(text, TOOLS)
    assert only(events, ToolCallFinished)[0].arguments == {"path": "p"} and not only(events, FormatError)
    assert message["reasoning_content"] == "thinking " and message["content"] == ""


def test_second_tool_call_block_adds_calls():
    text = "</think>" + calls(invoke("edit_file", ("path", "true", "a"))) + calls(invoke("edit_file")) + EOS
    events, message = parse_completion(text)
    assert len(only(events, ToolCallFinished)) == 2 and len(message["tool_calls"]) == 2


def test_malformed_parameter_tag_and_stray_text_inside_a_call():
    text = f'</think>\n\n<{D}function_calls>\n<{D}invoke name="edit_file">\nnoise\n'
    text += f'<{D}parameter name="path">a</{D}parameter>\n</{D}invoke>\n</{D}function_calls>' + EOS
    (error,) = only(parse_completion(text, TOOLS)[0], ToolCallError)
    assert "unexpected text inside the call: 'noise'" in error.message and "parameter tag is malformed" in error.message


def test_without_tools_any_name_is_accepted():
    events, _ = parse_completion("</think>" + calls(invoke("anything", ("x", "false", "[1, 2]"))) + EOS)
    assert only(events, ToolCallFinished)[0].arguments == {"x": [1, 2]}


def test_content_before_calls_keeps_its_own_newlines():
    text = "r</think>line\n" + calls(invoke("edit_file", ("path", "true", "a"))) + EOS
    _, message = parse_completion(text, TOOLS)
    assert message["content"] == "line\n"
    assert encode_messages([message], context=[{"role": "user", "content": "u"}]) == text


def test_parsed_messages_always_re_encode():
    for text in ["", "x", "</think>" + calls(invoke("nope", ("a", "false", "{"))), f"<{D}invoke name="]:
        parser = StreamParser(TOOLS)
        parser.feed(text)
        parser.finish()
        encode_messages([parser.message()], context=[{"role": "user", "content": "u"}])


def test_deltas_stream_without_waiting_for_the_end():
    parser = StreamParser(TOOLS)
    assert parser.feed("Let me look") == [ReasoningDelta(text="Let me look")]
    assert parser.feed(" at it\n\n<") == [ReasoningDelta(text=" at it")]  # "\n\n<" may start a tool-call block
    assert parser.feed("b>") == [ReasoningDelta(text="\n\n<b>")]
    assert parser.feed("</think>Done") == [ContentDelta(text="Done")]
