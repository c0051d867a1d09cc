"""The event stream of `dsagent fix`: every agent event (see agent/events.py) plus four fix events.

A headless fix prints one JSON object per line on stdout, in this order: `fix_started`, then
`fix_reproduced`; when the target fails, the agent's own events (`session_started` ... `turn_finished`),
then `fix_verified` and `patch`; and always `fix_finished` last, whose `exit_code` is the process's.
`dsagent fix --schema` prints the JSON Schema of one line. Versioning follows the agent's
`SCHEMA_VERSION`: adding an optional field or an event type keeps it, renaming or removing bumps it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union, get_args

from dsagent.agent.events import SCHEMA_VERSION, Event, _Event
from dsagent.agent.fix_verify import Row
from pydantic import BaseModel, Field, TypeAdapter

FixOutcome = Literal[
    "fixed",  # the target passes, no neighbour got worse, the contract holds (exit 0)
    "already_passing",  # nothing to fix; the model never ran (exit 0)
    "not_fixed",  # the run ended without a verified fix (exit 1)
    "rejected",  # the patch breaks the test contract (exit 1)
    "no_match",  # TARGET names no test (exit 2)
    "usage_error",  # bad options or configuration (exit 2)
    "environment_error",  # Docker, the sandbox image or the model is unavailable (exit 3)
    "limit",  # a step, token or time limit ended the run (exit 4)
]
EXIT_CODES: dict[str, int] = {
    "fixed": 0,
    "already_passing": 0,
    "not_fixed": 1,
    "rejected": 1,
    "no_match": 2,
    "usage_error": 2,
    "environment_error": 3,
    "limit": 4,
}


class TestOutcome(BaseModel):
    __test__ = False
    test: str
    """The pytest node id."""
    outcome: str
    """passed, failed, error, skipped, xfailed or missing."""
    message: str = ""


class FixStarted(_Event):
    type: Literal["fix_started"] = "fix_started"
    schema_version: int = SCHEMA_VERSION
    target: str
    repo: str
    scope: Literal["file", "module", "suite"]
    """Which neighbours are verified: the target's file, its folder or the whole suite."""
    allow_test_edits: bool = False
    deliver: Literal["patch", "apply", "branch"] = "patch"
    """What happens to a verified fix: only the patch, applied to the user's tree, or committed on a branch."""


class FixReproduced(_Event):
    """The target was run before any change."""

    type: Literal["fix_reproduced"] = "fix_reproduced"
    status: Literal["failing", "passing", "no_match"]
    tests: list[TestOutcome] = Field(default_factory=list)
    """The target's tests and their outcome."""
    neighbours: int = 0
    """How many other tests of the scope ran (their outcome is the baseline for regressions)."""
    failure: str = ""
    """The failure as the model is shown it: assertion, traceback, test source; or why nothing matched."""


class FixVerified(_Event):
    type: Literal["fix_verified"] = "fix_verified"
    rows: list[Row]
    """Target tests first, then the neighbours: before, after, status."""
    target_passes: bool
    regressions: list[str] = Field(default_factory=list)
    contract: list[str] = Field(default_factory=list)
    """Ways the patch breaks the test contract (a rejected patch is never applied)."""


class FixFinished(_Event):
    """Always the last line."""

    type: Literal["fix_finished"] = "fix_finished"
    outcome: FixOutcome
    exit_code: int
    message: str = ""
    """One line for people: what happened and, on failure, what to do."""
    summary: str = ""
    """The model's account of the cause and the fix (its finish summary)."""
    patch_path: str | None = None
    applied: bool = False
    branch: str | None = None
    commit: str | None = None
    session_id: str | None = None


FIX_EVENTS = (FixStarted, FixReproduced, FixVerified, FixFinished)
_AGENT_EVENTS = get_args(get_args(Event)[0])
FixStreamEvent = Annotated[Union[*_AGENT_EVENTS, *FIX_EVENTS], Field(discriminator="type")]  # noqa: UP007
FIX_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(FixStreamEvent)


def parse_fix_event(line: str | bytes) -> Any:
    return FIX_EVENT_ADAPTER.validate_json(line)


def fix_event_json_schema() -> dict[str, Any]:
    schema = FIX_EVENT_ADAPTER.json_schema()
    schema["title"] = f"dsagent fix event (schema version {SCHEMA_VERSION})"
    return schema
