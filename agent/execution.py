"""Runs the tool calls of one step: approvals, cancellation, and repeated failures.

Every call gets a `tool_call_started` and a `tool_call_finished` event, including calls that were
malformed, refused, or skipped because the run stopped, so the conversation always holds one result
per call. A tool runs in a worker thread so a cancel can return at once: tools that can stop early
expose `cancel()` (the sandbox kills the command's process group) and get a moment to do it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from dsagent.agent.approval import ApprovalPolicy
from dsagent.agent.conversation import call_key
from dsagent.agent.events import Event, FinishReason, Notice, ToolCallFinished, ToolCallStarted
from dsagent.tools.base import Registry, ToolResult

CANCEL_GRACE = 10.0  # seconds a cancelled tool gets to stop and report its partial output
POLL = 0.05
REPEAT_NOTE = (
    "\n\nNote: this exact call has failed before with these arguments. Repeating it will not help: "
    "change the arguments or take another approach. One more identical failing call ends the run."
)
FINISH_TOOL = "finish"


class ToolRunner:
    def __init__(
        self, registry: Registry, approval: ApprovalPolicy, emit: Callable[[Event], None], stop: threading.Event
    ) -> None:
        self.registry = registry
        self.approval = approval
        self.emit = emit
        self.stop = stop
        self.failures: dict[str, int] = {}

    def new_turn(self) -> None:
        self.failures.clear()

    def run_calls(
        self, step: int, calls: list[dict[str, Any]], malformed: dict[str, str], format_errors: list[str] = ()
    ) -> tuple[FinishReason, str] | None:
        """Run the calls in order; returns how the turn ends, or None to keep going."""
        outcome: tuple[FinishReason, str] | None = None
        for position, call in enumerate(calls):
            call_id, name = call["id"], call["function"]["name"]
            arguments, problem = _arguments(call, malformed.get(call_id))
            self.emit(ToolCallStarted(step=step, call_id=call_id, name=name, arguments=arguments))
            started, clock = time.time(), time.monotonic()
            cancelled = False
            if self.stop.is_set():
                result, cancelled = ToolResult.error("not run: the run was stopped before this call"), True
            elif outcome is not None:
                result = ToolResult.error(f"not run: the turn ended before this call ({outcome[0]})")
            elif problem is not None:
                result = ToolResult.error(problem)
            else:
                result, cancelled = self._approved_call(call_id, name, arguments)
            if not result.ok and not cancelled and outcome is None:
                outcome = self._count_failure(call_key(name, arguments), name, result)
            if name == FINISH_TOOL and result.ok and outcome is None:
                outcome = ("finished", str(arguments.get("summary", "")))
            if format_errors and position == len(calls) - 1:
                result.text += "\n\nNote: your last message broke the tool-call format: " + "; ".join(format_errors)
            self.emit(
                ToolCallFinished(
                    step=step,
                    call_id=call_id,
                    name=name,
                    ok=result.ok,
                    output=result.text,
                    data=result.data,
                    started_at=started,
                    duration=result.duration or time.monotonic() - clock,
                    timed_out=result.timed_out,
                    cancelled=cancelled,
                )
            )
        return outcome

    def _approved_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> tuple[ToolResult, bool]:
        if name not in self.registry:
            return self.registry.call(name, arguments), False  # the registry explains unknown tools
        tool = self.registry[name]
        verdict = self.approval.check(call_id, name, arguments, bool(getattr(tool, "mutates", True)), self.emit)
        if not verdict.allowed:
            return ToolResult.error(verdict.refusal), False
        return self._execute(name, arguments)

    def _execute(self, name: str, arguments: dict[str, Any]) -> tuple[ToolResult, bool]:
        box: dict[str, ToolResult] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["result"] = self.registry.call(name, arguments)
            finally:
                done.set()

        threading.Thread(target=work, name=f"tool-{name}", daemon=True).start()
        while not done.wait(POLL):
            if self.stop.is_set():
                return self._cancel(name, done, box), True
        return box["result"], False

    def _cancel(self, name: str, done: threading.Event, box: dict[str, ToolResult]) -> ToolResult:
        cancel = getattr(self.registry[name], "cancel", None)
        if callable(cancel):
            cancel()
            done.wait(CANCEL_GRACE)
        partial = box.get("result")
        text = f"cancelled: the run was stopped while {name} was running"
        if partial is not None and partial.text:
            text += f"; its output so far:\n{partial.text}"
        elif not callable(cancel):
            text += "; it may still finish in the background, so check its effect before relying on it"
        return ToolResult(text=text, ok=False, data=partial.data if partial else {})

    def _count_failure(self, key: str, name: str, result: ToolResult) -> tuple[FinishReason, str] | None:
        count = self.failures[key] = self.failures.get(key, 0) + 1
        if count == 2:
            result.text += REPEAT_NOTE
            self.emit(Notice(text=f"{name} failed twice with the same arguments; the model was told to change course"))
        elif count >= 3:
            return "repeated_failure", f"{name} failed {count} times with the same arguments"
        return None


def _arguments(call: dict[str, Any], malformed: str | None) -> tuple[dict[str, Any], str | None]:
    """The call's arguments as a dict, and the problem to report instead of running it (if any)."""
    raw = call["function"].get("arguments") or "{}"
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        shown = raw if isinstance(raw, str) else json.dumps(raw)
        return {"_raw": shown}, malformed or "arguments are not a JSON object"
    return value, malformed
