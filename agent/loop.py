"""The agent: a thinking-in-tool-use loop.

Each step sends the whole conversation to the backend (the local one reuses its KV cache, so only
new tokens cost anything), streams the reasoning and the answer as events, then runs the tool calls
in order and appends their results. The turn ends at `finish`, at an answer without tool calls, or at
a limit; every way out is a `turn_finished` event with its reason. State is a fold over the emitted
events (`Conversation.apply`), so a session file rebuilds it exactly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsagent.agent import context
from dsagent.agent.approval import ApprovalCallback, ApprovalPolicy
from dsagent.agent.backend import Backend, BackendError, Completion, CompletionRequest
from dsagent.agent.conversation import INTERRUPTED, Conversation, normalise_calls
from dsagent.agent.events import (
    AssistantMessage,
    ContentDelta,
    Error,
    Event,
    FinishReason,
    ReasoningDelta,
    SessionStarted,
    StepStarted,
    ToolCallFinished,
    TurnFinished,
    TurnStarted,
    Usage,
)
from dsagent.agent.execution import ToolRunner
from dsagent.agent.output_tool import ReadOutputTool
from dsagent.agent.prompt import render, system_prompt
from dsagent.agent.session import SavedSession, new_session_id
from dsagent.tools.base import Registry

if TYPE_CHECKING:
    from dsagent.config import Settings

EventSink = Callable[[Event], None]
SUMMARY_WORDS = 250


@dataclass
class TurnResult:
    reason: FinishReason
    summary: str
    steps: int
    generated_tokens: int


class Agent:
    """Construct with a backend, the tools, the settings, an approval callback (used under `ask`) and an
    event sink; then `run(task)` / `send(message)` from a worker thread and `cancel()` from any thread."""

    def __init__(
        self,
        backend: Backend,
        registry: Registry,
        settings: Settings,
        approve: ApprovalCallback | None = None,
        sink: EventSink | None = None,
        *,
        repo: Path | None = None,
        system: str | None = None,
        session_id: str | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.session_id = session_id or new_session_id()
        self.sinks: list[EventSink] = [sink] if sink else []
        max_context = settings.model.max_context
        self.budget = context.Budget(max_context, min(settings.model.sampling.max_new_tokens, max_context // 4))
        self.conversation = Conversation({})
        reader = ReadOutputTool(self.conversation, max_chars=min(40_000, max(1000, self.budget.limit)))
        tools = [registry[name] for name in registry.names() if name != ReadOutputTool.name]
        self.registry = Registry([*tools, reader])
        prompt = system if system is not None else system_prompt(repo, settings.agent.approval)
        self.conversation.system = {"role": "system", "content": prompt, "tools": self.registry.schemas()}
        self._stop = threading.Event()
        self._stop_reason: FinishReason = "cancelled"
        self.tools = ToolRunner(self.registry, ApprovalPolicy(settings.agent.approval, approve), self.emit, self._stop)
        self._announced = False
        self._resumed = False
        self._turn_steps = 0
        self._turn_generated = 0
        self.last_error: BackendError | None = None

    @property
    def system_prompt(self) -> str:
        return self.conversation.system["content"]

    # --- public API --------------------------------------------------------------------------------

    def run(self, task: str) -> TurnResult:
        """Start the session's work on `task` (the first user message)."""
        return self.send(task)

    def send(self, message: str) -> TurnResult:
        """A new user message: the reasoning of earlier turns drops out of the prompt from here on."""
        self._announce()
        self.emit(TurnStarted(turn=self.conversation.turn + 1, user_message=message))
        return self._run_turn()

    def resume(self) -> TurnResult:
        """Continue a restored turn that had not finished (the model writes the next step)."""
        if self.conversation.finished:
            raise ValueError("the session's last turn is finished; send a new message instead")
        self._announce()
        return self._run_turn()

    def cancel(self) -> None:
        """Stop generation or the running tool; the turn ends with reason `cancelled`."""
        self._stop_for("cancelled")

    def restore(self, saved: SavedSession) -> None:
        """Rebuild the conversation from a session file (before the first send/resume)."""
        for event in saved.events:
            self.conversation.apply(event)
        self._resumed = True

    def emit(self, event: Event) -> None:
        self.conversation.apply(event)
        for sink in self.sinks:
            sink(event)

    # --- the loop ----------------------------------------------------------------------------------

    def _announce(self) -> None:
        if self._announced:
            return
        self._announced = True
        self.emit(
            SessionStarted(
                session_id=self.session_id,
                model=self.backend.identity,
                scripted=self.backend.scripted,
                resumed=self._resumed,
            )
        )
        # A step cut short by a crash: answer its calls so the conversation is whole again.
        for call in self.conversation.pending_calls():
            now = time.time()
            self.emit(
                ToolCallFinished(
                    step=self.conversation.step,
                    call_id=call["id"],
                    name=call["function"]["name"],
                    ok=False,
                    output=INTERRUPTED,
                    started_at=now,
                    duration=0.0,
                    cancelled=True,
                )
            )

    def _stop_for(self, reason: FinishReason) -> None:
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    def _run_turn(self) -> TurnResult:
        self._stop.clear()
        self._stop_reason = "cancelled"
        self._turn_steps = self._turn_generated = 0
        self.tools.new_turn()
        started = time.monotonic()
        timer = threading.Timer(self.settings.agent.max_wall_time, self._stop_for, args=("max_wall_time",))
        timer.daemon = True
        timer.start()
        try:
            reason, summary = self._steps()
        finally:
            timer.cancel()
        self.emit(
            TurnFinished(
                turn=self.conversation.turn,
                reason=reason,
                summary=summary,
                steps=self._turn_steps,
                generated_tokens=self._turn_generated,
                elapsed=time.monotonic() - started,
            )
        )
        return TurnResult(reason, summary, self._turn_steps, self._turn_generated)

    def _limit_reached(self) -> tuple[FinishReason, str] | None:
        limits = self.settings.agent
        if self._stop.is_set():
            return self._stop_reason, _STOPPED[self._stop_reason]
        if self._turn_steps >= limits.max_steps:
            return "max_steps", f"stopped after {self._turn_steps} steps (agent.max_steps)"
        if self._turn_generated >= limits.max_generated_tokens:
            return (
                "max_generated_tokens",
                f"stopped after {self._turn_generated} generated tokens (agent.max_generated_tokens)",
            )
        return None

    def _cut_off(self, prompt_tokens: int) -> tuple[FinishReason, str]:
        """A reply that stopped at its token budget with no tool call: say which limit cut it."""
        model = self.settings.model
        if model.max_context - prompt_tokens < model.sampling.max_new_tokens:
            return "max_new_tokens", f"the reply filled the context (model.max_context, {model.max_context} tokens)"
        cap = model.sampling.max_new_tokens
        return "max_new_tokens", f"the reply was cut at model.sampling.max_new_tokens ({cap} tokens); raise it"

    def _steps(self) -> tuple[FinishReason, str]:
        while True:
            limit = self._limit_reached()
            if limit:
                return limit
            try:
                prompt_tokens = context.fit(self.conversation, self.budget, self._count, self._summarise, self.emit)
            except context.ContextTooSmall as exc:
                self.emit(Error(message=str(exc)))
                return "error", str(exc)
            step = self.conversation.step + 1
            self.emit(StepStarted(step=step))
            self._turn_steps += 1
            try:
                completion = self._complete(step, prompt_tokens)
            except BackendError as exc:
                self.last_error = exc
                self.emit(Error(message=str(exc)))
                return "error", str(exc)
            message, malformed = normalise_calls(completion.message, completion.malformed, set(self.conversation.names))
            self.emit(AssistantMessage(step=step, message=message))
            if completion.stopped == "cancelled":
                return self._stop_reason, _STOPPED[self._stop_reason]
            calls = message.get("tool_calls") or []
            if not calls:
                if completion.stopped == "length":  # cut off, not an answer
                    return self._limit_reached() or self._cut_off(prompt_tokens)
                return "answered", message.get("content") or ""
            outcome = self.tools.run_calls(step, calls, malformed, completion.format_errors)
            if outcome:
                return outcome

    def _complete(self, step: int, prompt_tokens: int) -> Completion:
        sampling = self.settings.model.sampling
        room = self.settings.model.max_context - prompt_tokens
        left = self.settings.agent.max_generated_tokens - self._turn_generated
        request = CompletionRequest(
            self.conversation.prompt_messages(),
            min(sampling.max_new_tokens, room, left),
            sampling,
            thinking=self.settings.agent.thinking,
        )

        def on_delta(kind: str, text: str) -> None:
            if kind == "tool_call":
                return  # calls are reported whole, once the completion is parsed
            delta = ReasoningDelta if kind == "reasoning" else ContentDelta
            self.emit(delta(step=step, text=text))

        completion = self.backend.complete(request, on_delta, self._stop)
        self._turn_generated += completion.usage.generated
        self._emit_usage(step, completion)
        return completion

    def _emit_usage(self, step: int, completion: Completion) -> None:
        usage = completion.usage
        self.emit(
            Usage(
                step=step,
                prompt_tokens=usage.prompt_tokens,
                prefilled=usage.prefilled,
                reused=usage.reused,
                generated=usage.generated,
                prefill_seconds=usage.prefill_seconds,
                decode_seconds=usage.decode_seconds,
                tokens_per_s=usage.tokens_per_s,
                estimated=usage.estimated,
            )
        )

    def _count(self, messages: list[dict[str, Any]]) -> int:
        return self.backend.count_tokens(messages, self.settings.agent.thinking)

    def _summarise(self, items: list[dict[str, Any]], max_chars: int) -> str:
        """The model writes a "done / next" note of `items` (empty when it cannot: the caller falls back)."""
        note = render("summary.md", max_words=SUMMARY_WORDS, transcript=context.transcript(items, max_chars))
        messages = [
            {"role": "system", "content": "You write short, factual working notes."},
            {"role": "user", "content": note},
        ]
        request = CompletionRequest(
            messages, min(1024, self.budget.reserve), self.settings.model.sampling, thinking=False, purpose="summary"
        )
        try:
            completion = self.backend.complete(request, lambda kind, text: None, self._stop)
        except BackendError as exc:
            self.emit(
                Error(message=f"could not summarise older steps ({exc}); listing the calls instead", recoverable=True)
            )
            return ""
        self._turn_generated += completion.usage.generated
        self.emit(AssistantMessage(step=self.conversation.step, message=completion.message, purpose="summary"))
        return completion.message.get("content") or ""


_STOPPED: dict[str, str] = {
    "cancelled": "cancelled by the user",
    "max_wall_time": "stopped at the time limit (agent.max_wall_time)",
}
