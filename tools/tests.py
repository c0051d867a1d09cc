"""run_tests: the repository's tests in the sandbox, one structured result per test."""

from __future__ import annotations

from typing import Any, ClassVar

from dsagent.sandbox.base import SandboxError
from dsagent.sandbox.junit import TestCase
from dsagent.sandbox.testrun import TestRun, run_tests
from dsagent.tools.base import ToolArgs, ToolResult, truncate_middle
from pydantic import Field

DETAILED = 10  # failures shown with their excerpt; the rest get one line each
ORDER = ("failed", "error", "timeout", "xpassed", "flaky", "passed", "skipped", "xfailed")


class RunTestsArgs(ToolArgs):
    target: str | None = Field(
        None,
        description="What to run: a pytest node id (tests/test_x.py::test_y[param]), `-k EXPRESSION`, "
        "or paths. Default: the whole suite.",
    )
    timeout: float | None = Field(
        None, gt=0, le=3600, description="Seconds before the run is killed. Default: the sandbox's command timeout."
    )


class RunTests:
    name: ClassVar[str] = "run_tests"
    description: ClassVar[str] = (
        "Run the repository's tests in the sandbox (pytest; go test, cargo test or npm test by project files) "
        "and report each test as passed/failed/error/skipped with the failure's assertion and traceback lines, "
        "plus totals. Failing tests are re-run once: those that pass then are reported as flaky."
    )
    args_model: ClassVar[type[ToolArgs]] = RunTestsArgs
    mutates: ClassVar[bool] = True  # test code runs arbitrary commands

    def __init__(self, sandbox: Any, settings: Any = None) -> None:
        self.sandbox = sandbox
        self.settings = settings

    def run(self, args: RunTestsArgs) -> ToolResult:
        settings = self.settings or self.sandbox.settings
        try:
            run = run_tests(self.sandbox, settings, args.target, args.timeout)
        except SandboxError as exc:
            return ToolResult.error(f"the sandbox is unavailable: {exc}")
        return ToolResult(
            text=render(run), ok=run.ok, timed_out=run.timed_out, duration=run.duration, data=result_data(run)
        )

    def cancel(self) -> None:
        self.sandbox.cancel()


def totals(run: TestRun) -> str:
    counts = run.counts
    parts = [f"{counts[o]} {o}" for o in ORDER if counts.get(o)]
    return ", ".join(parts) or "no test results"


def render(run: TestRun) -> str:
    """What the model reads: totals, then each problem with its excerpt."""
    how = "timed out" if run.timed_out else f"exit code {run.exit_code}"
    lines = [f"{run.runner}: {totals(run)} ({how}, {run.duration:.1f} s)", f"ran: {run.command}"]
    if run.note:
        lines.append(f"note: {run.note}")
    problems = [c for c in run.cases if c.outcome in ("failed", "error", "timeout", "xpassed", "flaky")]
    for index, case in enumerate(problems):
        lines.append(_case_line(case))
        if index < DETAILED and case.excerpt and case.outcome != "flaky":
            lines.extend("    " + line for line in case.excerpt.splitlines())
    if not run.cases or (not run.ok and not problems):
        lines.append("output:")
        lines.append(truncate_middle(run.output.rstrip(), max_lines=120, max_chars=12_000) or "(no output)")
    return "\n".join(lines)


def _case_line(case: TestCase) -> str:
    message = f" - {case.message}" if case.message else ""
    return f"{case.outcome.upper()} {case.nodeid}{message}"


def result_data(run: TestRun) -> dict[str, Any]:
    """For front ends: one row per test (name, outcome, message) and the totals."""
    return {
        "runner": run.runner,
        "command": run.command,
        "exit_code": run.exit_code,
        "tests": [
            {"name": c.nodeid, "outcome": c.outcome, "message": c.message, "excerpt": c.excerpt, "duration": c.duration}
            for c in run.cases
        ],
        "counts": run.counts,
        "flaky": [c.nodeid for c in run.cases if c.outcome == "flaky"],
    }
