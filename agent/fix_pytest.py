"""pytest in the sandbox, for `dsagent fix`: collect a target's node ids, and run a set of tests with one
outcome per node id (through `sandbox/testrun.py`, the same runner as the run_tests tool)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from dsagent.sandbox.junit import TestCase
from dsagent.sandbox.testrun import PYTEST, run_tests

NO_MATCH_CODES = (4, 5)  # pytest: usage error (no such file or test), no tests collected
COLLECT_FLAGS = "-p no:cacheprovider --color=no -q --collect-only"
# A broken test module elsewhere must not stop the rest of the scope from running.
KEEP_GOING = "--continue-on-collection-errors"


class PytestUnavailable(Exception):
    """pytest could not run at all in the sandbox (not installed, image without Python)."""


@dataclass
class Collection:
    nodeids: list[str]
    exit_code: int
    output: str

    @property
    def no_match(self) -> bool:
        return self.exit_code in NO_MATCH_CODES

    def reason(self) -> str:
        """pytest's own one-line explanation of why nothing matched."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        for line in lines:
            if line.startswith("ERROR:"):
                return line.removeprefix("ERROR:").strip()
        return lines[-1] if lines else f"pytest exit code {self.exit_code}"


@dataclass
class RunReport:
    args: list[str]
    exit_code: int
    output: str
    results: dict[str, TestCase] = field(default_factory=dict)
    duration: float = 0.0

    def select(self, nodeids: list[str]) -> dict[str, TestCase]:
        return {nodeid: self.results.get(nodeid, TestCase(nodeid, "missing")) for nodeid in nodeids}


class PytestRunner:
    """Runs pytest through a sandbox (`exec(command, timeout) -> ExecResult`) with the sandbox settings."""

    def __init__(self, sandbox: Any, settings: Any) -> None:
        self.sandbox = sandbox
        self.settings = settings
        configured = settings.test_command
        self.command = configured if configured and "pytest" in configured else PYTEST

    def collect(self, target: str) -> Collection:
        result = self.sandbox.exec(
            f"{self.command} {COLLECT_FLAGS} {shlex.quote(target)}", timeout=self.settings.command_timeout
        )
        if result.exit_code in (126, 127) or "No module named pytest" in result.output:
            raise PytestUnavailable(
                f"pytest does not run in the sandbox ({result.output.strip()[-200:]}); build "
                "an image with pytest (`dsagent sandbox build`) or set sandbox.image"
            )
        ids = [line.strip() for line in result.output.splitlines() if "::" in line and not line.startswith(" ")]
        return Collection([i for i in ids if not i.startswith(("ERROR", "FAILED"))], result.exit_code, result.output)

    def run(self, args: list[str]) -> RunReport:
        run = run_tests(self.sandbox, self.settings, " ".join([KEEP_GOING, *map(shlex.quote, args)]))
        if run.note.startswith("pytest does not run"):
            raise PytestUnavailable(run.note)
        return RunReport(args, run.exit_code, run.output, {case.nodeid: case for case in run.cases}, run.duration)
