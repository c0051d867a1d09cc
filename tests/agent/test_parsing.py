"""CompletionParser: a streamed DSML completion -> deltas as they come, tool-call parts included, and one
assistant message whose calls carry the ids and argument strings that were streamed."""

from __future__ import annotations

import json

from dsagent.agent.parsing import CompletionParser
from dsagent.model.dsml import encode_tool_calls

TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object", "required": ["path"]}}}
    for name in ("read_file", "list_dir")
]


def _call(name: str, arguments: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def test_tool_calls_stream_part_by_part_with_the_ids_of_the_message():
    calls = [_call("read_file", {"path": "a.py", "end_line": 3}), _call("list_dir", {"path": "src"})]
    raw = "Look first.</think>\n\nChecking." + encode_tool_calls(calls) + "<｜end▁of▁sentence｜>"
    deltas: list[tuple[str, str]] = []
    parser = CompletionParser(TOOLS, lambda kind, text: deltas.append((kind, text)))
    fed = []  # how much of the text had been fed when each tool-call part arrived
    for start in range(0, len(raw), 7):
        parser.feed(raw[start : start + 7])
        fed += [start + 7] * (len(deltas) - len(fed))
    message, malformed, errors = parser.finish()
    assert not malformed and not errors
    parts = [(json.loads(text), at) for (kind, text), at in zip(deltas, fed, strict=True) if kind == "tool_call"]
    assert [(p["index"], "arguments" in p) for p, _ in parts] == [(0, False), (0, True), (1, False), (1, True)]
    # each part as soon as its markup was read: the first call's name well before the second call is written
    second_call = raw.index('invoke name="list_dir"')
    assert parts[0][1] < second_call and parts[1][1] <= second_call + 7
    final = message["tool_calls"]
    assert [p["id"] for p, _ in parts] == [final[0]["id"]] * 2 + [final[1]["id"]] * 2
    assert [p["name"] for p, _ in parts] == ["read_file", "read_file", "list_dir", "list_dir"]
    assert parts[1][0]["arguments"] == final[0]["function"]["arguments"]
    assert json.loads(parts[3][0]["arguments"]) == {"path": "src"}
    assert "".join(t for k, t in deltas if k == "reasoning") == "Look first."
    assert "".join(t for k, t in deltas if k == "content") == message["content"] == "\n\nChecking."


def test_a_malformed_call_streams_its_name_but_no_arguments():
    raw = "</think>" + encode_tool_calls([_call("read_file", {"pathx": "a.py"})]) + "<｜end▁of▁sentence｜>"
    deltas: list[tuple[str, str]] = []
    parser = CompletionParser(TOOLS, lambda kind, text: deltas.append((kind, text)))
    parser.feed(raw)
    message, malformed, _ = parser.finish()
    parts = [json.loads(text) for kind, text in deltas if kind == "tool_call"]
    call_id = message["tool_calls"][0]["id"]
    assert parts == [{"index": 0, "id": call_id, "name": "read_file"}]
    assert "path" in malformed[call_id]
