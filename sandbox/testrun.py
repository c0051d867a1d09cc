"""Run a repository's tests in the sandbox and read back one result per test.

The runner is detected from project files (pytest first, then go test, cargo test, npm test) unless
`sandbox.test_command` says otherwise. pytest writes a JUnit XML report to the container's /tmp
(never into the workspace, so it never lands in the patch); failing tests are run once more and
those that pass the second time are reported as flaky.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsagent.sandbox.base import ExecResult, SandboxError
from dsagent.sandbox.junit import TestCase, parse_junit, parse_progress

PYTEST = "python3 -m pytest"
PYTEST_FLAGS = (
    "-p no:cacheprovider --color=no -v --tb=short --continue-on-collection-errors "
    "-o junit_family=xunit1 -o console_output_style=classic"
)
MAX_RERUNS = 20
PYTHON_MARKERS = ("pytest.ini", "conftest.py", "setup.py", "setup.cfg", "tox.ini", "pyproject.toml")


@dataclass
class TestRun:
    __test__ = False

    runner: str  # pytest | go | cargo | npm | custom
    command: str
    exit_code: int
    duration: float
    output: str
    timed_out: bool = False
    cases: list[TestCase] = field(default_factory=list)
    note: str = ""

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for case in self.cases:
            counts[case.outcome] = counts.get(case.outcome, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        """Everything ran and nothing failed (flaky tests passed on their re-run)."""
        bad = {"failed", "error", "timeout", "xpassed"}
        if self.timed_out or any(case.outcome in bad for case in self.cases):
            return False
        flaky_only = self.exit_code == 1 and any(case.outcome == "flaky" for case in self.cases)
        return self.exit_code == 0 or flaky_only


def detect_runner(workspace: Path) -> str:
    """pytest for anything that looks like Python (or nothing recognisable); else go, cargo, npm."""
    if any((workspace / name).exists() for name in PYTHON_MARKERS) or _has_python_tests(workspace):
        return "pytest"
    if (workspace / "go.mod").is_file():
        return "go"
    if (workspace / "Cargo.toml").is_file():
        return "cargo"
    package = workspace / "package.json"
    if package.is_file():
        try:
            if json.loads(package.read_text()).get("scripts", {}).get("test"):
                return "npm"
        except (ValueError, AttributeError):
            pass
    return "pytest"


def _has_python_tests(workspace: Path) -> bool:
    for pattern in ("test_*.py", "*_test.py", "tests/*.py"):
        if next(workspace.glob(pattern), None) is not None:
            return True
    return False


def target_args(target: str | None) -> list[str]:
    """A node id (brackets and spaces kept whole), `-k EXPR`, or paths."""
    if not target or not target.strip():
        return []
    target = target.strip()
    if target.startswith("-") or " " not in target:
        return shlex.split(target) if target.startswith("-") else [target]
    if "::" in target or "[" in target:
        return [target]
    return shlex.split(target)


def run_tests(sandbox: Any, settings: Any, target: str | None = None, timeout: float | None = None) -> TestRun:
    """Run the tests (`settings` is the sandbox section of the settings)."""
    timeout = timeout or settings.command_timeout
    configured = settings.test_command
    runner = detect_runner(Path(sandbox.workspace)) if not configured else "custom"
    if configured and "pytest" in configured:
        runner = "pytest"
    if runner == "pytest":
        return _pytest(sandbox, configured or PYTEST, target_args(target), timeout)
    base = configured or {"go": "go test -json", "cargo": "cargo test", "npm": "npm test --"}[runner]
    if runner == "go" and not target:
        base += " ./..."
    command = f"{base} {shlex.join(target_args(target))}".strip()
    result = sandbox.exec(command, timeout=timeout)
    run = _from_exec(runner, command, result)
    run.cases = parse_go_json(result.output) if runner == "go" else parse_cargo(result.output)
    program = shlex.split(command)[0]
    if result.exit_code == 127 and f"{program}: command not found" in result.output:
        run.note = (
            f"the sandbox image has no `{program}`; set sandbox.image to an image with the {runner} toolchain "
            "(or sandbox.test_command)"
        )
    return run


def _from_exec(runner: str, command: str, result: ExecResult) -> TestRun:
    return TestRun(runner, command, result.exit_code, result.duration, result.output, result.timed_out)


def _pytest(sandbox: Any, base: str, args: list[str], timeout: float) -> TestRun:
    run = _pytest_once(sandbox, base, args, timeout)
    failing = [c.nodeid for c in run.cases if c.outcome in ("failed", "error") and "::" in c.nodeid]
    if run.timed_out or not failing or len(failing) > MAX_RERUNS:
        return run
    again = _pytest_once(sandbox, base, failing, timeout)
    passed_now = {c.nodeid for c in again.cases if c.outcome == "passed"}
    for case in run.cases:
        if case.nodeid in passed_now:
            case.outcome = "flaky"
            case.message = f"failed, then passed on a re-run: {case.message}".rstrip(": ")
    if passed_now and all(c.outcome not in ("failed", "error") for c in run.cases):
        run.note = "every failure passed on a re-run: the suite is flaky"
    return run


def _pytest_once(sandbox: Any, base: str, args: list[str], timeout: float) -> TestRun:
    report = f"/tmp/.dsagent-junit-{secrets.token_hex(6)}.xml"
    shown = f"{base} {shlex.join(args)}".strip()
    # Earlier reports go first: each run leaves only its own in the container's /tmp.
    command = f"rm -f /tmp/.dsagent-junit-*.xml; {base} {PYTEST_FLAGS} --junitxml={report} {shlex.join(args)}"
    result = sandbox.exec(command, timeout=timeout)
    run = _from_exec("pytest", shown, result)
    if not result.timed_out and not result.cancelled:
        run.cases = _report_cases(sandbox, report)
    if not run.cases:  # no report (killed, crashed): recover what the progress lines show
        run.cases = parse_progress(result.output, result.timed_out)
    if result.exit_code in (126, 127) or "No module named pytest" in result.output:
        run.note = "pytest does not run in this image; build one with `dsagent sandbox build` or set sandbox.image"
    elif result.exit_code == 5 and not run.cases:
        run.note = "no tests ran: the target matched no test"
    elif result.exit_code == 4:
        run.note = "pytest could not use the target or options (usage error)"
    return run


def _report_cases(sandbox: Any, report: str) -> list[TestCase]:
    try:
        if hasattr(sandbox, "read_file"):
            text = sandbox.read_file(report)
        else:
            text = sandbox.exec(f"cat {report}", timeout=60).output
        return parse_junit(text)
    except (ValueError, SandboxError):
        return []


def parse_go_json(output: str) -> list[TestCase]:
    """`go test -json` events -> one case per test (`pkg.TestName`)."""
    cases: dict[str, TestCase] = {}
    logs: dict[str, list[str]] = {}
    for line in output.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or not event.get("Test"):
            continue
        key = f"{event.get('Package', '')}.{event['Test']}"
        action = event.get("Action")
        if action == "output":
            logs.setdefault(key, []).append(event.get("Output", ""))
        elif action in ("pass", "fail", "skip"):
            outcome = {"pass": "passed", "fail": "failed", "skip": "skipped"}[action]
            text = "".join(logs.get(key, [])).strip()
            message = next((ln.strip() for ln in text.splitlines() if ln.strip() and "---" not in ln), "")
            cases[key] = TestCase(
                key,
                outcome,
                message if outcome != "passed" else "",
                text[-2000:] if outcome == "failed" else "",
                float(event.get("Elapsed") or 0),
            )
    return list(cases.values())


CARGO_LINE = re.compile(r"^test (?P<name>\S+) \.\.\. (?P<status>ok|FAILED|ignored)")


def parse_cargo(output: str) -> list[TestCase]:
    """libtest's `test name ... ok|FAILED|ignored` lines."""
    outcomes = {"ok": "passed", "FAILED": "failed", "ignored": "skipped"}
    cases = []
    for line in output.splitlines():
        found = CARGO_LINE.match(line.strip())
        if found:
            cases.append(TestCase(found.group("name"), outcomes[found.group("status")]))
    return cases
