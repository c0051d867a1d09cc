"""dsagent.agent: the loop, events, sessions, backends."""

from dsagent.agent.approval import ApprovalDecision
from dsagent.agent.backend import Backend, BackendError, Completion, CompletionRequest, make_backend
from dsagent.agent.loop import Agent, TurnResult

__all__ = [
    "Agent",
    "ApprovalDecision",
    "Backend",
    "BackendError",
    "Completion",
    "CompletionRequest",
    "TurnResult",
    "make_backend",
]
