"""The agent part of `dsagent fix`: the contract-guarded tools, the fix prompt, and one recorded session
(`.dsagent/sessions/<id>.jsonl`, so `dsagent resume` can continue a fix that stopped)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsagent.agent.fix_contract import TestContract
from dsagent.agent.fix_target import source_of_test
from dsagent.agent.fix_tools import ContractGuard, guard_registry

if TYPE_CHECKING:
    from dsagent.agent.fix import FixRun
    from dsagent.agent.fix_pytest import PytestRunner
    from dsagent.agent.loop import TurnResult

MAP_TOKENS = 1024
MAX_TEST_SOURCES = 3
_TRACE_FILE = re.compile(r"^([\w./-]+\.py):\d+", re.MULTILINE)


class AgentSession:
    """The agent with its session file; every event goes to the file and to the fix's sinks."""

    def __init__(self, fix: FixRun, registry: Any, task: str) -> None:
        from dsagent.agent.loop import Agent
        from dsagent.agent.prompt import system_prompt
        from dsagent.agent.session import SessionHeader, SessionWriter, new_session_id

        workspace, settings = fix.workspace, fix.settings
        self.fix = fix
        self.workspace = workspace
        self.session_id = new_session_id()
        system = system_prompt(workspace.root, settings.agent.approval)
        header = SessionHeader(
            session_id=self.session_id,
            repo=str(workspace.repo),
            task=task,
            model=fix.backend.identity,
            config=settings.model_dump(mode="json"),
            system=system,
        )
        self.writer = SessionWriter.create(workspace.repo, header)
        self.mutating = {name for name in registry.names() if getattr(registry[name], "mutates", True)}
        self.agent = Agent(
            fix.backend,
            registry,
            settings,
            fix.approve,
            self._dispatch,
            repo=workspace.root,
            system=system,
            session_id=self.session_id,
        )

    @property
    def last_error(self) -> Any:
        return self.agent.last_error

    def _dispatch(self, event: Any) -> None:
        from dsagent.agent.session import save_patch

        # The patch is saved before the event that records the edit: a crash between the two must
        # never leave a recorded edit missing from the saved patch.
        if event.type == "tool_call_finished" and event.name in self.mutating:
            save_patch(self.writer.path, self.workspace.patch_bytes())
        self.writer(event)
        self.fix.emit(event)

    def run(self, task: str) -> TurnResult:
        from dsagent.agent.cli import _cancel_on_ctrl_c

        with _cancel_on_ctrl_c(self.agent):
            return self.agent.run(task)

    def close(self) -> None:
        self.writer.close()


def run_agent(fix: FixRun, runner: PytestRunner) -> TurnResult:
    """Start the backend (only now: a passing or unknown target never loads a model) and run one turn."""
    from dsagent.agent.backend import BackendError
    from dsagent.agent.fix import FixStop
    from dsagent.tools.registry import default_registry

    try:
        fix.backend = fix.make_backend()
    except BackendError as exc:
        raise FixStop("usage_error" if exc.kind == "config" else "environment_error", str(exc)) from None
    workspace = fix.workspace
    registry = default_registry(workspace.root, index_dir=workspace.index_dir, sandbox=fix.sandbox)
    contract = TestContract(workspace.root, fix.target_files(), fix.options.allow_test_edits)
    guard = ContractGuard(contract, workspace, on_finish=lambda: _finish_check(fix, runner))
    guard.green_runs = fix.green_runs
    task = fix_prompt(fix, contract, registry.context)
    fix.session = AgentSession(fix, guard_registry(registry, guard), task)
    return fix.session.run(task)


def _finish_check(fix: FixRun, runner: PytestRunner) -> str | None:
    verification, results = fix.verify(runner)
    return verification.problem(results)


def fix_prompt(fix: FixRun, contract: TestContract, context: Any) -> str:
    from dsagent.agent.prompt import render

    target, root = fix.target, Path(fix.workspace.root)
    sources = [source_of_test(root, nodeid) for nodeid in fix.target_ids[:MAX_TEST_SOURCES]]
    sources = [source for source in sources if source]
    test_source = "\n\n".join(sources) or f"(not located; read {target.path})"
    failure = fix.failure_text()
    scope_args = target.scope_args(fix.options.scope)
    scope_hint = f"on `{' '.join(scope_args)}`" if scope_args else "with no target (the whole suite)"
    return render(
        "fix.md",
        target=target.spec,
        failure=failure,
        test_source=test_source,
        repo_map=_repo_map(context, root, target.path, failure),
        contract=contract.rules(),
        scope_hint=scope_hint,
    )


def _repo_map(context: Any, root: Path, test_path: str, failure: str) -> str:
    """The map centred on the test file and the repository files its traceback passes through."""
    files = [test_path] + [path for path in _TRACE_FILE.findall(failure) if (root / path).is_file()]
    focus = " ".join(dict.fromkeys(files))
    context.fresh_index()
    result = context.repo_map.render(focus, MAP_TOKENS)
    return result.text.strip() or "(no indexed source files)"
