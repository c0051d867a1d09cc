"""Turns a streamed DSML completion into deltas and one OpenAI-format assistant message.

Used by every backend that sees raw model text (the local engine, raw lines of a scripted session,
`dsagent serve`). Malformed calls keep their place in `tool_calls` (the parser keeps what it could
read) so the loop can answer each one with an error result the model reads.
"""

from __future__ import annotations

import secrets
from typing import Any

from dsagent.agent.backend import OnDelta
from dsagent.model.dsml_encode import to_json


def new_call_id() -> str:
    return f"call_{secrets.token_hex(6)}"


class CompletionParser:
    """Feed text deltas of any size; `finish()` returns (message, malformed, format errors)."""

    def __init__(self, tools: list[dict[str, Any]], on_delta: OnDelta, thinking: bool = True) -> None:
        from dsagent.model.dsml import StreamParser

        self._parser = StreamParser(tools or None, thinking=thinking)
        self._on_delta = on_delta
        self._errors: dict[int, str] = {}
        self._ids: dict[int, str] = {}  # call index -> id, given when the call opens so streamed parts match
        self.format_errors: list[str] = []

    def feed(self, delta: str) -> None:
        for event in self._parser.feed(delta):
            self._handle(event)

    @property
    def done(self) -> bool:
        """The model closed its message (end-of-sentence)."""
        return self._parser.done

    def finish(self) -> tuple[dict[str, Any], dict[str, str], list[str]]:
        for event in self._parser.finish():
            self._handle(event)
        message = self._parser.message()
        calls = message.pop("tool_calls")
        malformed: dict[str, str] = {}
        for index, call in enumerate(calls):
            call["id"] = self._ids.get(index) or new_call_id()
            if index in self._errors:
                call["function"]["name"] = call["function"]["name"] or "invalid"
                malformed[call["id"]] = self._errors[index]
        if calls:
            message["tool_calls"] = calls
        return message, malformed, self.format_errors

    def _handle(self, event: Any) -> None:
        kind = event.type
        if kind == "reasoning_delta" and event.text:
            self._on_delta("reasoning", event.text)
        elif kind == "content_delta" and event.text:
            self._on_delta("content", event.text)
        elif kind == "tool_call_started":
            call_id = self._ids.setdefault(event.index, new_call_id())
            self._on_delta("tool_call", to_json({"index": event.index, "id": call_id, "name": event.name}))
        elif kind == "tool_call_finished":
            part = {"index": event.index, "id": self._ids.setdefault(event.index, new_call_id())}
            self._on_delta("tool_call", to_json(part | {"name": event.name, "arguments": event.arguments_json}))
        elif kind == "tool_call_error":
            self._errors[event.index] = event.message
        elif kind == "format_error":
            self.format_errors.append(event.message)
