"""Approval policy for tool calls: `auto` runs everything, `ask` asks the front end before a tool
that edits files or runs commands, `read-only` refuses those tools."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from dsagent.agent.events import ApprovalDecided, ApprovalRequested, Event
from pydantic import BaseModel


class ApprovalDecision(BaseModel):
    choice: Literal["once", "session", "deny"]
    """once: run this call; session: run it and every later call of this tool; deny: refuse it."""
    note: str = ""
    """Words for the model, sent with a denial."""

    @property
    def allowed(self) -> bool:
        return self.choice != "deny"


ApprovalCallback = Callable[[ApprovalRequested], ApprovalDecision]


@dataclass
class Verdict:
    allowed: bool
    refusal: str = ""  # the result text the model reads when refused


def command_of(name: str, arguments: dict[str, Any]) -> str | None:
    if name == "run_shell":
        return str(arguments.get("command", ""))
    if name == "run_tests":
        return f"run tests {arguments.get('target') or '(all)'}"
    return None


class ApprovalPolicy:
    def __init__(self, mode: Literal["auto", "ask", "read-only"], callback: ApprovalCallback | None) -> None:
        self.mode = mode
        self.callback = callback
        self.allowed_for_session: set[str] = set()

    def check(
        self, call_id: str, name: str, arguments: dict[str, Any], mutates: bool, emit: Callable[[Event], None]
    ) -> Verdict:
        if not mutates or self.mode == "auto":
            return Verdict(True)
        if self.mode == "read-only":
            emit(ApprovalDecided(call_id=call_id, approved=False, by="policy", note="read-only session"))
            return Verdict(
                False,
                f"refused: {name} changes files or runs commands, and this session is "
                "read-only (agent.approval = read-only); use the tools that only read",
            )
        if name in self.allowed_for_session:
            emit(ApprovalDecided(call_id=call_id, approved=True, by="session"))
            return Verdict(True)
        request = ApprovalRequested(
            call_id=call_id,
            name=name,
            arguments=arguments,
            command=command_of(name, arguments),
            reason=f"{name} changes the workspace",
        )
        emit(request)
        if self.callback is None:
            decision = ApprovalDecision(choice="deny", note="no one is there to approve it")
        else:
            decision = self.callback(request)
        if decision.choice == "session":
            self.allowed_for_session.add(name)
        emit(ApprovalDecided(call_id=call_id, approved=decision.allowed, by="user", note=decision.note))
        if decision.allowed:
            return Verdict(True)
        why = f": {decision.note}" if decision.note else ""
        return Verdict(False, f"the user denied this {name} call{why}; do something else or ask in your answer")
