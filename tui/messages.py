"""What the agent worker tells the UI, as Textual messages (dataclasses).

The agent runs in a thread; the bridge turns each agent event into one of these and posts it to the
app (`post_message` is thread-safe). The widgets only ever see these, so they can be driven by a test
or a demo without an agent.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

from textual.message import Message

Choice = Literal["once", "session", "deny"]


@dataclass
class ApprovalRequest:
    """A tool call waiting for the user's say under the `ask` policy."""

    tool: str
    arguments: dict[str, Any]
    command: str | None = None  # the exact shell command, for run_shell / run_tests
    diff: str | None = None  # the exact change, for edit_file / write_file
    reason: str = ""  # why it needs approval, shown under the title


@dataclass
class ApprovalDecision:
    choice: Choice
    note: str = ""  # optional words for the model, sent with a denial

    @property
    def allowed(self) -> bool:
        return self.choice != "deny"


@dataclass
class Usage:
    """Numbers for the status bar; None leaves a field as it was."""

    context_used: int | None = None
    context_limit: int | None = None
    prefilled: int | None = None  # prompt tokens computed on the last step
    reused: int | None = None  # prompt tokens served from the KV cache on the last step
    tokens_per_s: float | None = None  # generation speed of the last step
    step: int | None = None


@dataclass
class SessionOpened(Message):
    """A session (new or resumed) is ready: who writes the turns."""

    session_id: str
    backend: str
    model: str
    resumed: bool = False


@dataclass
class TurnStarted(Message):
    """The user's task went to the agent."""

    text: str


@dataclass
class StepStarted(Message):
    """The model starts writing one completion."""

    step: int


@dataclass
class ReasoningDelta(Message):
    text: str


@dataclass
class AnswerDelta(Message):
    text: str


@dataclass
class StepEnded(Message):
    """The completion is done: the reasoning block folds."""

    step: int


@dataclass
class ToolStarted(Message):
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class ToolFinished(Message):
    call_id: str
    name: str
    ok: bool
    output: str
    duration: float
    timed_out: bool = False
    data: dict[str, Any] = field(default_factory=dict)  # diff, test outcomes, ... for the card


@dataclass
class ApprovalRequested(Message):
    """The agent thread waits on `future` until the user answers in the modal."""

    request: ApprovalRequest
    future: Future[ApprovalDecision]


@dataclass
class UsageUpdated(Message):
    usage: Usage


@dataclass
class ActivityChanged(Message):
    """What the agent's side is busy with before the model runs (loading the model, starting the sandbox)."""

    activity: str


@dataclass
class SandboxChanged(Message):
    state: str  # "off", "starting", "ready", "error: ..."


@dataclass
class TurnEnded(Message):
    """The agent stopped: finished, cancelled, out of steps, failed."""

    reason: str
    summary: str = ""


@dataclass
class AgentFailed(Message):
    """Something the user must read: shown inline in red."""

    message: str


@dataclass
class Notice(Message):
    """A line of information from a command (/apply, /undo, ...)."""

    text: str
    error: bool = False
