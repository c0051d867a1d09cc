"""The agent's event stream: one pydantic model per kind of event, `type` as the discriminator.

The same stream feeds the TUI, the readable text printer, the headless JSONL writer and the session
file. Schema version `SCHEMA_VERSION` is stated by the first event of every stream (`session_started`)
and in every session file header. Compatible additions (a new optional field, a new event type) keep
the version; renaming or removing a field, or changing its meaning, bumps it.
`dsagent run --schema` prints the JSON Schema of one line of the stream.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1

FinishReason = Literal[
    "finished",  # the model called finish(summary)
    "answered",  # the model replied without tool calls
    "max_steps",
    "max_generated_tokens",
    "max_wall_time",
    "max_new_tokens",  # a reply cut at model.sampling.max_new_tokens (or a full context) with no tool call
    "repeated_failure",  # the same failing call again after a corrective note
    "cancelled",
    "error",  # the backend failed (auth, network after retries, engine error)
]
# The reasons that mean a limit stopped the run (exit code 4 in run and fix).
LIMIT_REASONS: tuple[FinishReason, ...] = ("max_steps", "max_generated_tokens", "max_wall_time", "max_new_tokens")


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    time: float = Field(default_factory=time.time)
    """Unix time the event happened, in seconds."""


class SessionStarted(_Event):
    """First event of a stream: who writes the assistant's turns and under which schema."""

    type: Literal["session_started"] = "session_started"
    session_id: str
    schema_version: int = SCHEMA_VERSION
    model: dict[str, Any]
    """Model identity: backend, path or URL, name; `scripted: true` for recorded replays. Never keys."""
    scripted: bool = False
    resumed: bool = False


class TurnStarted(_Event):
    type: Literal["turn_started"] = "turn_started"
    turn: int
    user_message: str


class StepStarted(_Event):
    """The model starts one completion (a step: one completion and its tool calls)."""

    type: Literal["step_started"] = "step_started"
    step: int


class ReasoningDelta(_Event):
    type: Literal["reasoning_delta"] = "reasoning_delta"
    step: int
    text: str


class ContentDelta(_Event):
    type: Literal["content_delta"] = "content_delta"
    step: int
    text: str


class AssistantMessage(_Event):
    """A finished completion in OpenAI format (`content`, `reasoning_content`, `tool_calls`)."""

    type: Literal["assistant_message"] = "assistant_message"
    step: int
    message: dict[str, Any]
    purpose: Literal["step", "summary"] = "step"
    """`summary`: a "done / next" note the model wrote to compact the context."""


class ToolCallStarted(_Event):
    type: Literal["tool_call_started"] = "tool_call_started"
    step: int
    call_id: str
    name: str
    arguments: dict[str, Any]


class ApprovalRequested(_Event):
    """Under the `ask` policy, the loop waits for the front end's answer."""

    type: Literal["approval_requested"] = "approval_requested"
    call_id: str
    name: str
    arguments: dict[str, Any]
    command: str | None = None
    """The exact shell command, for run_shell / run_tests."""
    reason: str = ""


class ApprovalDecided(_Event):
    type: Literal["approval_decided"] = "approval_decided"
    call_id: str
    approved: bool
    by: Literal["policy", "user", "session"]
    """policy: decided by auto/read-only; user: answered now; session: an earlier "allow for the session"."""
    note: str = ""


class ToolCallFinished(_Event):
    """The result the model reads (`output`) plus structured data for the UI."""

    type: Literal["tool_call_finished"] = "tool_call_finished"
    step: int
    call_id: str
    name: str
    ok: bool
    output: str
    data: dict[str, Any] = Field(default_factory=dict)
    started_at: float
    duration: float
    timed_out: bool = False
    cancelled: bool = False


class Usage(_Event):
    """Tokens of one step. `prefilled + reused == prompt_tokens`; `estimated` when the backend counts
    no tokens itself (scripted) and the numbers come from the tokenizer or a character estimate."""

    type: Literal["usage"] = "usage"
    step: int
    prompt_tokens: int
    prefilled: int
    reused: int
    generated: int
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    tokens_per_s: float = 0.0
    """Generated tokens per second of decoding."""
    estimated: bool = False


class ContextCompacted(_Event):
    """The prompt was shrunk to fit `model.max_context`: tool outputs elided, older steps summarised.
    Applying these in order to the conversation rebuilds exactly the prompt the model saw."""

    type: Literal["context_compacted"] = "context_compacted"
    elided: list[str] = Field(default_factory=list)
    """Tool call ids whose outputs were replaced by a one-line pointer (read_output shows them)."""
    shortened: dict[str, int] = Field(default_factory=dict)
    """Tool call id -> characters kept (head + tail) of an output too large even for the last step."""
    summary: str | None = None
    summary_start: int = 0
    summary_end: int = 0
    """Messages [start, end) of the conversation (system excluded) that `summary` replaced."""
    prompt_tokens_before: int
    prompt_tokens_after: int


class Notice(_Event):
    """Information for the user that the model does not see (a corrective note, a retry)."""

    type: Literal["notice"] = "notice"
    text: str


class Error(_Event):
    type: Literal["error"] = "error"
    message: str
    recoverable: bool = False


class TurnFinished(_Event):
    type: Literal["turn_finished"] = "turn_finished"
    turn: int
    reason: FinishReason
    summary: str = ""
    """finish(summary), the final answer, or what stopped the run."""
    steps: int
    generated_tokens: int
    elapsed: float


class Patch(_Event):
    """The run's change to the repository, as a git patch (empty when nothing changed)."""

    type: Literal["patch"] = "patch"
    diff: str
    files: list[str] = Field(default_factory=list)
    path: str | None = None
    """Where the patch was written, when it was."""


Event = Annotated[
    SessionStarted
    | TurnStarted
    | StepStarted
    | ReasoningDelta
    | ContentDelta
    | AssistantMessage
    | ToolCallStarted
    | ApprovalRequested
    | ApprovalDecided
    | ToolCallFinished
    | Usage
    | ContextCompacted
    | Notice
    | Error
    | TurnFinished
    | Patch,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(line: str | bytes) -> Event:
    """One JSONL line -> its event model (raises pydantic.ValidationError when it is not one)."""
    return EVENT_ADAPTER.validate_json(line)


def event_json_schema() -> dict[str, Any]:
    schema = EVENT_ADAPTER.json_schema()
    schema["title"] = f"dsagent event (schema version {SCHEMA_VERSION})"
    return schema
