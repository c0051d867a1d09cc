"""`dsagent fix TARGET`: reproduce a failing test in the sandbox, let the agent fix it under the test
contract, prove the fix against the test's neighbours, and hand back a patch.

Everything runs in an isolated worktree of the user's repository and a sandbox container; the user's
tree changes only with `--apply` (merged in) or `--branch` (a new commit on a new branch). The run is
a sequence of events (agent events plus the fix events of `fix_events.py`), rendered as text on a
terminal and as JSONL in headless mode. The outcome maps to the exit code (`EXIT_CODES`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsagent.agent.fix_events import EXIT_CODES, FixFinished, FixReproduced, FixStarted, TestOutcome
from dsagent.agent.fix_pytest import PytestRunner, PytestUnavailable, RunReport
from dsagent.agent.fix_target import Scope, Target, TargetError, parse_target
from dsagent.agent.fix_verify import Verification, compare
from dsagent.sandbox.junit import TestCase

if TYPE_CHECKING:
    from dsagent.config import Settings

FAILURE_CHARS = 6000


@dataclass
class FixOptions:
    target: str
    repo: Path
    scope: Scope = "file"
    allow_test_edits: bool = False
    apply: bool = False
    branch: str | None = None
    patch_file: Path | None = None
    """Where the patch is written; None: `.dsagent/patches/fix-<session>.patch` in the repository."""

    @property
    def deliver(self) -> str:
        return "apply" if self.apply else "branch" if self.branch else "patch"


class FixStop(Exception):
    """Ends the fix early with an outcome (no match, environment error, ...)."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


class FixRun:
    """One `dsagent fix`. `run()` returns the final event; `emit` receives every event on the way."""

    def __init__(
        self,
        settings: Settings,
        options: FixOptions,
        emit: Callable[[Any], None],
        make_backend: Callable[[], Any],
        approve: Any = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.emit = emit
        self.make_backend = make_backend
        self.approve = approve
        self.workspace: Any = None
        self.sandbox: Any = None
        self.backend: Any = None
        self.session: Any = None
        self.target: Target | None = None
        self.target_ids: list[str] = []
        self.before: RunReport | None = None
        self._verified: tuple[str, Verification, dict[str, TestCase]] | None = None
        self.green_runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        """Shared with the contract guard: the agent's all-green run_tests results by (target, tree)."""

    def run(self) -> FixFinished:
        options = self.options
        self.emit(
            FixStarted(
                target=options.target,
                repo=str(options.repo),
                scope=options.scope,
                allow_test_edits=options.allow_test_edits,
                deliver=options.deliver,
            )
        )
        try:
            final = self._run()
        except FixStop as stop:
            final = FixFinished(outcome=stop.outcome, exit_code=EXIT_CODES[stop.outcome], message=str(stop))
        finally:
            self.close()
        self.emit(final)
        return final

    def close(self) -> None:
        for closer in (self.session, self.sandbox, self.backend):
            if closer is not None:
                closer.close()
        self.session = self.sandbox = self.backend = None
        if self.workspace is not None:
            self.workspace.cleanup()

    # --- the steps ---------------------------------------------------------------------------------

    def _run(self) -> FixFinished:
        self._open_workspace()
        self._start_sandbox()
        runner = PytestRunner(self.sandbox, self.settings.sandbox)
        failing = self._reproduce(runner)
        if not failing:
            return FixFinished(
                outcome="already_passing",
                exit_code=0,
                message=f"{self.target.spec} already passes; nothing to fix (the model was not run)",
            )
        from dsagent.agent.fix_outcome import conclude
        from dsagent.agent.fix_session import run_agent

        result = run_agent(self, runner)
        return conclude(self, runner, result)

    def _open_workspace(self) -> None:
        from dsagent.sandbox.workspace import Workspace, WorkspaceError

        try:
            self.workspace = Workspace(self.options.repo)
            self.target = parse_target(self.options.target, self.workspace.repo)
        except (WorkspaceError, TargetError) as exc:
            raise FixStop("usage_error", str(exc)) from None
        if self.options.branch:
            from dsagent.agent.fix_outcome import check_branch

            check_branch(self.workspace.repo, self.options.branch)

    def _start_sandbox(self) -> None:
        from dsagent.sandbox.base import SandboxError
        from dsagent.sandbox.container import DockerSandbox

        try:
            self.sandbox = DockerSandbox(self.workspace.root, self.settings.sandbox).start()
        except SandboxError as exc:
            raise FixStop("environment_error", str(exc)) from None

    def _reproduce(self, runner: PytestRunner) -> bool:
        """Run the target and its neighbours as they are; True when the target fails."""
        target = self.target
        try:
            self.before = runner.run(target.scope_args(self.options.scope))
            self.target_ids = [nodeid for nodeid in self.before.results if target.covers(nodeid)]
            if not self.target_ids:
                self._collect_target(runner)
        except PytestUnavailable as exc:
            raise FixStop("environment_error", str(exc)) from None
        results = self.before.select(self.target_ids)
        failing = any(result.outcome != "passed" for result in results.values())
        tests = [TestOutcome(test=r.nodeid, outcome=r.outcome, message=r.message) for r in results.values()]
        neighbours = len(set(self.before.results) - set(self.target_ids))
        self.emit(
            FixReproduced(
                status="failing" if failing else "passing",
                tests=tests,
                neighbours=neighbours,
                failure=self.failure_text() if failing else "",
            )
        )
        return failing

    def _collect_target(self, runner: PytestRunner) -> None:
        """The scope's results name no test of the target: ask pytest what the target is, and run it
        on its own when it lies outside the scope (e.g. outside `testpaths`)."""
        target = self.target
        collection = runner.collect(target.spec)
        if collection.no_match:
            reason = collection.reason()
            self.emit(FixReproduced(status="no_match", failure=reason))
            raise FixStop(
                "no_match",
                f"{target.spec} matches no test ({reason}); give a node id that "
                "`pytest --collect-only` lists, e.g. tests/test_x.py::test_y",
            )
        self.target_ids = collection.nodeids or [target.path]  # none: the file fails to import
        if not any(nodeid in self.before.results for nodeid in self.target_ids):
            extra = runner.run([target.spec])
            self.before.results.update(extra.results)
            self.before.output += "\n" + extra.output

    def failure_text(self) -> str:
        """The target's failures as pytest reported them (assertion and traceback), bounded."""
        from dsagent.tools.base import truncate_middle

        parts = []
        for result in self.before.select(self.target_ids).values():
            if result.outcome == "passed":
                continue
            reason = result.message.splitlines()[0] if result.message else ""
            head = f"{result.nodeid}: {result.outcome.upper()}" + (f" - {reason}" if reason else "")
            parts.append(head + ("\n" + result.excerpt.rstrip() if result.excerpt else ""))
        if not parts:
            parts.append(self.before.output)
        return truncate_middle("\n\n".join(parts), max_lines=200, max_chars=FAILURE_CHARS)

    # --- proving the fix ---------------------------------------------------------------------------

    def verify(self, runner: PytestRunner) -> tuple[Verification, dict[str, TestCase]]:
        """Run the scope on the workspace as it is now; cached per workspace tree."""
        tree = self.workspace.current_tree()
        if self._verified is not None and self._verified[0] == tree:
            return self._verified[1], self._verified[2]
        scope = self.target.scope_args(self.options.scope)
        after = self._green_run(scope, tree) or runner.run(scope)
        if not any(nodeid in after.results for nodeid in self.target_ids):
            extra = runner.run([self.target.spec])
            after.results.update(extra.results)
        target_now = [n for n in after.results if self.target.covers(n) or n in self.target_ids]
        verification = compare(list(dict.fromkeys([*self.target_ids, *target_now])), self.before.results, after.results)
        self._verified = (tree, verification, after.results)
        return verification, after.results

    def _green_run(self, scope: list[str], tree: str) -> RunReport | None:
        """The agent's own run_tests of exactly this scope on exactly this tree, when all of it passed."""
        tests = self.green_runs.get((" ".join(scope), tree))
        if not tests:
            return None
        cases = [TestCase(t["name"], t["outcome"], t.get("message", ""), t.get("excerpt", "")) for t in tests]
        return RunReport(scope, 0, "", {case.nodeid: case for case in cases})

    # --- helpers for the agent session -------------------------------------------------------------

    @property
    def session_id(self) -> str | None:
        return getattr(self.session, "session_id", None)

    def target_files(self) -> list[str]:
        """The test files that define the target (repository-relative)."""
        files = {nodeid.split("::", 1)[0] for nodeid in self.target_ids}
        if self.target.is_file:
            files.add(self.target.path)
        return sorted(f for f in files if f.endswith(".py"))
