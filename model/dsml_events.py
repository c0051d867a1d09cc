"""Events the DSML stream parser emits while a completion arrives."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field


class ReasoningDelta(BaseModel):
    """More text of the thinking block."""

    type: Literal["reasoning_delta"] = "reasoning_delta"
    text: str


class ContentDelta(BaseModel):
    """More text of the visible answer."""

    type: Literal["content_delta"] = "content_delta"
    text: str


class ToolCallStarted(BaseModel):
    """An `<｜DSML｜invoke name=...>` tag was read; `index` is the call's position in `message()["tool_calls"]`."""

    type: Literal["tool_call_started"] = "tool_call_started"
    index: int
    name: str


class ToolCallFinished(BaseModel):
    """A complete, valid call: arguments decoded with the `string="true|false"` rule; `arguments_json` is the
    string `message()` will carry for them."""

    type: Literal["tool_call_finished"] = "tool_call_finished"
    index: int
    name: str
    arguments: dict[str, Any]
    arguments_json: str = ""


class ToolCallError(BaseModel):
    """A malformed call. It still has an entry at `index` in `message()["tool_calls"]` (with the arguments
    that could be read), so the agent answers it with `message` as the tool result. `name` is None when
    the invoke tag itself could not be read."""

    type: Literal["tool_call_error"] = "tool_call_error"
    index: int
    name: str | None
    message: str


class FormatError(BaseModel):
    """The completion broke the format outside any single call (special token in the text, text after the
    tool calls, a block left open). What could be recovered is in `message()`; the offending text is
    left out of it. The agent may pass `message` on to the model with the tool results."""

    type: Literal["format_error"] = "format_error"
    message: str


class MessageEnd(BaseModel):
    """The completion is over (end-of-sentence token read, or `finish()` called); `message()` is final."""

    type: Literal["message_end"] = "message_end"


Event = Annotated[
    ReasoningDelta | ContentDelta | ToolCallStarted | ToolCallFinished | ToolCallError | FormatError | MessageEnd,
    Field(discriminator="type"),
]


def coalesce(events: list[BaseModel]) -> list[BaseModel]:
    """Merge neighbouring text deltas of the same kind; the result does not depend on how the text was split."""
    out: list[BaseModel] = []
    for event in events:
        if isinstance(event, ReasoningDelta | ContentDelta) and out and type(out[-1]) is type(event):
            out[-1] = type(event)(text=out[-1].text + event.text)
        elif not isinstance(event, ReasoningDelta | ContentDelta) or event.text:
            out.append(event)
    return out
