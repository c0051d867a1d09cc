"""Agent events -> UI messages. The same adapter serves a live run and the replay of a saved session
(where a step may have no deltas, only its finished assistant message)."""

from __future__ import annotations

from typing import Any

from dsagent.agent import events as ev
from dsagent.tui import messages as ui
from textual.message import Message


def _model_name(model: dict[str, Any]) -> str:
    name = model.get("name") or model.get("path") or model.get("url") or ""
    return str(name).rstrip("/").rsplit("/", 1)[-1] if name else ""


class EventAdapter:
    def __init__(self) -> None:
        self._streamed_steps: set[int] = set()  # steps whose text came as deltas

    def convert(self, event: Any) -> list[Message]:
        match event:
            case ev.SessionStarted():
                backend = str(event.model.get("backend", "scripted" if event.scripted else "?"))
                return [ui.SessionOpened(event.session_id, backend, _model_name(event.model), event.resumed)]
            case ev.TurnStarted():
                return [ui.TurnStarted(event.user_message)]
            case ev.StepStarted():
                return [ui.StepStarted(event.step)]
            case ev.ReasoningDelta():
                self._streamed_steps.add(event.step)
                return [ui.ReasoningDelta(event.text)]
            case ev.ContentDelta():
                self._streamed_steps.add(event.step)
                return [ui.AnswerDelta(event.text)]
            case ev.AssistantMessage():
                return self._assistant_message(event)
            case ev.ToolCallStarted():
                return [ui.ToolStarted(event.call_id, event.name, event.arguments)]
            case ev.ToolCallFinished():
                output = event.output if not event.cancelled else (event.output or "cancelled")
                return [
                    ui.ToolFinished(
                        event.call_id,
                        event.name,
                        event.ok and not event.cancelled,
                        output,
                        event.duration,
                        event.timed_out,
                        dict(event.data),
                    )
                ]
            case ev.Usage():
                usage = ui.Usage(
                    context_used=event.prompt_tokens + event.generated,
                    prefilled=event.prefilled,
                    reused=event.reused,
                    tokens_per_s=event.tokens_per_s,
                    step=event.step,
                )
                return [ui.UsageUpdated(usage)]
            case ev.ContextCompacted():
                text = f"context compacted: {event.prompt_tokens_before} -> {event.prompt_tokens_after} tokens"
                return [ui.Notice(text)]
            case ev.Notice():
                return [ui.Notice(event.text)]
            case ev.Error():
                return [ui.AgentFailed(event.message)]
            case ev.TurnFinished():
                return [ui.TurnEnded(event.reason, event.summary)]
        return []  # approval events travel through the approval callback, not the stream

    def _assistant_message(self, event: ev.AssistantMessage) -> list[Message]:
        if event.purpose != "step":
            return []
        out: list[Message] = []
        if event.step not in self._streamed_steps:  # replayed from a session file: no deltas were seen
            reasoning = event.message.get("reasoning_content") or ""
            content = event.message.get("content") or ""
            if reasoning:
                out.append(ui.ReasoningDelta(reasoning))
            if content:
                out.append(ui.AnswerDelta(content))
        self._streamed_steps.discard(event.step)
        out.append(ui.StepEnded(event.step))
        return out
