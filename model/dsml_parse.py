"""Incremental parser for DeepSeek-V3.2 completions: reasoning, content and DSML tool calls.

The accepted text is a superset of what the official parser accepts, and gives the same message for
everything the official parser accepts:

    [reasoning </think>] content [\\n\\n<｜DSML｜function_calls> invokes </｜DSML｜function_calls>] [EOS]

Whitespace between tags is free, a tool-call block that starts inside the thinking block ends it, and a
second tool-call block after the first adds its calls. Anything else that breaks the format becomes a
`ToolCallError` (for one call) or a `FormatError` (outside the calls); the parser never raises.
Events are the same whatever the split of the text into deltas, up to how text deltas are cut
(`coalesce` makes them identical).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from .dsml_calls import INVOKE_SYNTAX, PARAM_SYNTAX, ParsedCall, index_tools
from .dsml_events import (
    ContentDelta,
    FormatError,
    MessageEnd,
    ReasoningDelta,
    ToolCallStarted,
    coalesce,
)
from .dsml_format import (
    CALLS_CLOSE,
    CALLS_OPEN,
    CALLS_START,
    DSML_TOKEN,
    EOS_TOKEN,
    INVOKE_CLOSE,
    INVOKE_OPEN,
    PARAM_CLOSE,
    PARAM_OPEN,
    SPECIAL_TOKENS,
    THINK_END,
)
from .dsml_scan import scan, snippet

REASONING, CONTENT, TAG, CALLS, INVOKE, VALUE, AFTER, DONE = (
    "reasoning", "content", "tag", "calls", "invoke", "value", "after", "done"
)  # fmt: skip
TEXT_MARKERS = (CALLS_START, CALLS_OPEN, *SPECIAL_TOKENS)
CALLS_MARKERS = (INVOKE_OPEN, CALLS_CLOSE, EOS_TOKEN)
INVOKE_MARKERS = (PARAM_OPEN, INVOKE_CLOSE, INVOKE_OPEN, CALLS_CLOSE, EOS_TOKEN)
VALUE_MARKERS = (PARAM_CLOSE, EOS_TOKEN)
AFTER_MARKERS = (CALLS_START, CALLS_OPEN, EOS_TOKEN)
INVOKE_ATTRS = re.compile(r'\s*name="(.*)"\s*', re.DOTALL)
PARAM_ATTRS = re.compile(r'\s*name="(.*?)"\s+string="(true|false)"\s*', re.DOTALL)


class StreamParser:
    """Feed completion text as it arrives; read events and, at the end, the OpenAI-format message.

    `tools` (OpenAI function specs) lets the parser reject unknown tools and missing required
    parameters; None accepts any call. `thinking` says whether the prompt ended with `<think>` (the
    completion starts with reasoning) or `</think>` (it starts with content).
    """

    def __init__(self, tools: list[dict] | None = None, thinking: bool = True) -> None:
        self._tools = index_tools(tools)
        self._state = REASONING if thinking else CONTENT
        self._buf = ""
        self._reasoning: list[str] = []
        self._content: list[str] = []
        self._calls: list[ParsedCall] = []
        self._events: list[BaseModel] = []
        self._reported: set[str] = set()
        self._tag_kind = ""  # which tag's attributes TAG state is reading
        self._tag_text = ""
        self._param: tuple[str, bool] | None = None  # the parameter VALUE state is reading (None: unusable)
        self._value: list[str] = []
        self._junk: list[str] = []
        self._steps: dict[str, Callable[[bool], bool]] = {
            REASONING: self._step_text,
            CONTENT: self._step_text,
            TAG: self._step_tag,
            CALLS: lambda final: self._step_struct(CALLS_MARKERS, final),
            INVOKE: lambda final: self._step_struct(INVOKE_MARKERS, final),
            VALUE: self._step_value,
            AFTER: lambda final: self._step_struct(AFTER_MARKERS, final),
        }

    @property
    def done(self) -> bool:
        """True once the message has ended (end-of-sentence read or `finish()` called)."""
        return self._state == DONE

    def feed(self, delta: str) -> list[BaseModel]:
        """Add text; return the events it completes. Text after the end of the message is ignored."""
        if self._state != DONE:
            self._buf += delta
            self._run(final=False)
        return self._take()

    def finish(self) -> list[BaseModel]:
        """The completion is over: flush held-back text, report open blocks, end the message."""
        if self._state != DONE:
            self._run(final=True)
            self._guard(self._close_open_blocks)
            self._end()
        return self._take()

    def message(self) -> dict[str, Any]:
        """The assistant message parsed so far, in OpenAI format (with `reasoning_content`)."""
        return {
            "role": "assistant",
            "content": "".join(self._content),
            "reasoning_content": "".join(self._reasoning),
            "tool_calls": [call.openai() for call in self._calls],
        }

    # -- driving ------------------------------------------------------------------------------------

    def _run(self, final: bool) -> None:
        self._guard(lambda: self._loop(final))

    def _loop(self, final: bool) -> None:
        while self._state != DONE and self._steps[self._state](final):
            pass

    def _guard(self, action: Callable[[], None]) -> None:
        # Last line of defence for the "never raises" promise; tests check that it never fires.
        try:
            action()
        except Exception as exc:
            self._events.append(FormatError(message=f"internal parser error: {type(exc).__name__}: {exc}"))
            self._end()

    def _take(self) -> list[BaseModel]:
        events, self._events = coalesce(self._events), []
        return events

    def _end(self) -> None:
        if self._state != DONE:
            self._state = DONE
            self._buf = ""
            self._events.append(MessageEnd())

    def _format_error(self, message: str) -> None:
        if message not in self._reported:
            self._reported.add(message)
            self._events.append(FormatError(message=message))

    # -- reasoning and content ------------------------------------------------------------------------

    def _step_text(self, final: bool) -> bool:
        n, marker = scan(self._buf, TEXT_MARKERS, final)
        if n:
            self._emit_text(self._buf[:n])
        self._buf = self._buf[n + len(marker or "") :]
        if marker is None:
            return n > 0
        where = "thinking block" if self._state == REASONING else "answer"
        if marker in (CALLS_START, CALLS_OPEN):
            self._open_tag("calls")
        elif marker == THINK_END and self._state == REASONING:
            self._state = CONTENT
        elif marker == EOS_TOKEN:
            if self._state == REASONING:
                self._format_error("the reply ended inside the thinking block, before </think>")
            self._end()
        else:
            self._format_error(f"the special token {marker} is not allowed in the {where}; it was removed")
        return True

    def _emit_text(self, text: str) -> None:
        if self._state == REASONING:
            self._reasoning.append(text)
            self._events.append(ReasoningDelta(text=text))
        else:
            self._content.append(text)
            self._events.append(ContentDelta(text=text))

    # -- tags ---------------------------------------------------------------------------------------

    def _open_tag(self, kind: str) -> None:
        self._tag_kind, self._tag_text, self._state = kind, "", TAG

    def _step_tag(self, final: bool) -> bool:
        """Read a tag's attributes up to `>`; a `<` first means the tag was never closed."""
        buf = self._buf
        gt, lt = buf.find(">"), buf.find("<")
        if gt != -1 and (lt == -1 or gt < lt):
            attrs, self._buf, status = buf[:gt], buf[gt + 1 :], "ok"
        elif lt != -1:
            attrs, self._buf, status = buf[:lt], buf[lt:], "unclosed"
        elif final:
            attrs, self._buf, status = buf, "", "cut"
        else:
            self._tag_text += buf
            self._buf = ""
            return False
        attrs, self._tag_text = self._tag_text + attrs, ""
        self._on_tag(self._tag_kind, attrs, status)
        return True

    def _on_tag(self, kind: str, attrs: str, status: str) -> None:
        if kind == "calls":
            self._state = CALLS
        elif kind == "calls_close":
            self._state = AFTER
        elif kind == "invoke":
            self._start_call(attrs, status)
        elif kind == "param":
            self._start_param(attrs, status)
        elif kind == "param_close":
            self._state = INVOKE
        elif kind == "invoke_close":
            self._close_call()

    def _start_call(self, attrs: str, status: str) -> None:
        call = ParsedCall(index=len(self._calls))
        self._calls.append(call)
        self._state = INVOKE
        match = INVOKE_ATTRS.fullmatch(attrs)
        if match:
            call.name = match[1]
            self._events.append(ToolCallStarted(index=call.index, name=call.name))
        if not match or status != "ok":
            call.errors.append(f"the invoke tag must read {INVOKE_SYNTAX}")

    def _start_param(self, attrs: str, status: str) -> None:
        call, match = self._calls[-1], PARAM_ATTRS.fullmatch(attrs)
        self._param, self._value, self._state = None, [], VALUE
        if not match or status != "ok":
            call.errors.append(f"a parameter tag is malformed ({snippet(attrs)}); write {PARAM_SYNTAX}")
        elif match[1] in call.raw:
            call.errors.append(f"parameter {match[1]!r} is given twice")
        else:
            self._param = (match[1], match[2] == "true")

    # -- parameter values ------------------------------------------------------------------------------

    def _step_value(self, final: bool) -> bool:
        n, marker = scan(self._buf, VALUE_MARKERS, final)
        self._value.append(self._buf[:n])
        self._buf = self._buf[n + len(marker or "") :]
        if marker is None:
            return n > 0
        self._store_param()
        if marker == PARAM_CLOSE:
            self._open_tag("param_close")
        else:
            self._calls[-1].errors.append("the reply ended inside a parameter value")
            self._close_call()
            self._end()
        return True

    def _store_param(self) -> None:
        if self._param is not None:
            self._calls[-1].add_param(*self._param, "".join(self._value))
        self._param, self._value = None, []

    # -- between tags ---------------------------------------------------------------------------------

    def _step_struct(self, markers: tuple[str, ...], final: bool) -> bool:
        """Skip whitespace; collect anything else up to the next tag as misplaced text."""
        if not self._junk:
            stripped = self._buf.lstrip()
            if len(stripped) != len(self._buf):
                self._buf = stripped
                return True
        n, marker = scan(self._buf, markers, final)
        if n:
            self._junk.append(self._buf[:n])
        self._buf = self._buf[n + len(marker or "") :]
        if marker is None:
            return n > 0
        self._flush_junk()
        self._on_struct_marker(marker)
        return True

    def _flush_junk(self) -> None:
        if not self._junk:
            return
        text, self._junk = snippet("".join(self._junk)), []
        if self._state == INVOKE:
            self._calls[-1].errors.append(f"unexpected text inside the call: {text}")
        elif self._state == CALLS:
            self._format_error(f"text between tool calls was ignored: {text}")
        else:
            self._format_error(f"text after the tool calls was ignored: {text}")

    def _on_struct_marker(self, marker: str) -> None:
        if self._state == INVOKE and marker != PARAM_OPEN and marker != INVOKE_CLOSE:
            self._calls[-1].errors.append(f"the call was not closed with </{DSML_TOKEN}invoke>")
            self._close_call()
        if marker == EOS_TOKEN:
            if self._state == CALLS:
                self._format_error(f"the reply ended before </{DSML_TOKEN}function_calls>")
            self._end()
        else:
            kinds = {
                CALLS_START: "calls",
                CALLS_OPEN: "calls",
                CALLS_CLOSE: "calls_close",
                INVOKE_OPEN: "invoke",
                INVOKE_CLOSE: "invoke_close",
                PARAM_OPEN: "param",
            }
            self._open_tag(kinds[marker])

    # -- calls ----------------------------------------------------------------------------------------

    def _close_call(self) -> None:
        call = self._calls[-1]
        self._state = CALLS
        call.check(self._tools)
        self._events.append(call.event())

    def _close_open_blocks(self) -> None:
        """At the end of the text: report whatever block is still open."""
        self._flush_junk()
        state = self._state
        if state == REASONING:
            self._format_error("the reply ended inside the thinking block, before </think>")
        elif state == CALLS:
            self._format_error(f"the reply ended before </{DSML_TOKEN}function_calls>")
        elif state in (INVOKE, VALUE):
            if state == VALUE:
                self._store_param()
            self._calls[-1].errors.append("the reply ended inside the call")
            self._close_call()


def parse_completion(text: str, tools: list[dict] | None = None, thinking: bool = True) -> tuple[list, dict]:
    """Parse a whole completion at once: (events, message)."""
    parser = StreamParser(tools, thinking=thinking)
    events = parser.feed(text) + parser.finish()
    return coalesce(events), parser.message()
