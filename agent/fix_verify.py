"""Before and after: did the target start passing, and did any neighbour that passed get worse?"""

from __future__ import annotations

from dataclasses import dataclass

from dsagent.sandbox.junit import TestCase
from pydantic import BaseModel


class Row(BaseModel):
    """One test of the verification table."""

    test: str
    """The pytest node id."""
    target: bool
    """Part of TARGET (the rest are its neighbours in the verification scope)."""
    before: str
    """Outcome before the fix: passed, failed, error, skipped, xfailed, xpassed, flaky, timeout or missing."""
    after: str
    status: str
    """fixed, passes, still failing, collects now, ok, regressed, now passes, still <outcome>, new, removed."""


def row_status(target: bool, before: str, after: str, test: str = "") -> str:
    if target and "::" not in test and before == "error" and after == "missing":
        return "collects now"  # a file that failed to import: its tests now have rows of their own
    if target:
        if after == "passed":
            return "passes" if before == "passed" else "fixed"
        return "still failing"
    if before == "passed":
        if after in ("passed", "flaky"):
            return "ok" if after == "passed" else "flaky"  # failed once, passed on the re-run
        return "removed" if after == "missing" else "regressed"
    if before == "missing":
        return "new"
    return "now passes" if after == "passed" else f"still {after}"


@dataclass
class Verification:
    rows: list[Row]

    @property
    def target_rows(self) -> list[Row]:
        return [row for row in self.rows if row.target]

    @property
    def target_passes(self) -> bool:
        rows = [row for row in self.target_rows if row.status != "collects now"]
        return bool(rows) and all(row.after == "passed" for row in rows)

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.status in ("regressed", "removed")]

    @property
    def ok(self) -> bool:
        return self.target_passes and not self.regressions

    def problem(self, failures: dict[str, TestCase]) -> str | None:
        """Why the fix does not hold yet, with the failure output; None when it does."""
        if self.ok:
            return None
        parts = []
        failing = [row for row in self.target_rows if row.after != "passed"]
        if failing:
            parts.append("the target still fails: " + ", ".join(f"{r.test} ({r.after})" for r in failing))
        if self.regressions:
            parts.append(
                "tests that passed before now fail: " + ", ".join(f"{r.test} ({r.after})" for r in self.regressions)
            )
        details = [
            failures[r.test].excerpt or failures[r.test].message
            for r in failing + self.regressions
            if r.test in failures and (failures[r.test].excerpt or failures[r.test].message)
        ]
        text = "; ".join(parts)
        if details:
            text += "\n\n" + "\n\n".join(details[:3])
        return text


def compare(target_ids: list[str], before: dict[str, TestCase], after: dict[str, TestCase]) -> Verification:
    """Rows for the target first, then every neighbour, in the order pytest ran them."""
    names = list(dict.fromkeys([*target_ids, *before, *after]))
    targets = set(target_ids)
    rows = []
    for name in sorted(names, key=lambda n: n not in targets):
        was = before[name].outcome if name in before else "missing"
        now = after[name].outcome if name in after else "missing"
        rows.append(
            Row(
                test=name,
                target=name in targets,
                before=was,
                after=now,
                status=row_status(name in targets, was, now, name),
            )
        )
    return Verification(rows)
