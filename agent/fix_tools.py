"""The test contract enforced in the tools: every tool keeps its name, arguments and description, but
a change that breaks the contract never stays in the workspace, and the model is told why.

- edit_file / write_file on a read-only file are refused before they touch it.
- After any tool that changes files (edits, shell commands), the workspace patch is checked; files
  whose change broke the contract are put back as they were before the call, and the result says so.
- finish is refused while the patch breaks the contract, while the target still fails, or while a
  neighbour that passed before fails; the refusal carries the evidence.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsagent.agent.fix_contract import TestContract, Violation, explain
from dsagent.tools.base import Registry, ToolArgs, ToolError, ToolResult

PATH_TOOLS = ("edit_file", "write_file")


class ContractGuard:
    """What the guarded tools share: the contract, the workspace, and the check run at finish."""

    def __init__(self, contract: TestContract, workspace: Any, on_finish: Callable[[], str | None]) -> None:
        self.contract = contract
        self.workspace = workspace
        self.on_finish = on_finish
        """Verifies the workspace: None when the fix holds, else why finish is refused."""
        self.reverted: list[Violation] = []
        self.green_runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        """(run_tests target, workspace tree) -> its tests, for runs where everything passed: the final
        verification of that same tree and scope need not run pytest again."""

    def violations(self) -> list[Violation]:
        return self.contract.check_patch(self.workspace.patch())

    def snapshot(self) -> str:
        return self.workspace.current_tree()

    def restore(self, tree: str, paths: set[str]) -> None:
        """Put `paths` back as they were in `tree` (deleting those that did not exist there)."""
        root = Path(self.workspace.root)
        for rel in sorted(paths):
            blob = subprocess.run(["git", "cat-file", "blob", f"{tree}:{rel}"], cwd=root, capture_output=True)
            target = root / rel
            if blob.returncode == 0:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob.stdout)
            elif target.is_file() or target.is_symlink():
                target.unlink()


class GuardedTool:
    """A tool seen through the contract; anything else (cancel, attributes) goes to the inner tool."""

    def __init__(self, inner: Any, guard: ContractGuard, jail: Any, on_change: Callable[[str], None]) -> None:
        self.inner = inner
        self.guard = guard
        self.jail = jail
        self.on_change = on_change
        self.name = inner.name
        self.description = inner.description
        self.args_model = inner.args_model
        self.mutates = getattr(inner, "mutates", True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def run(self, args: ToolArgs) -> ToolResult:
        if self.name == "finish":
            return self._finish(args)
        if self.name in PATH_TOOLS:
            self._refuse_read_only(args.path)
        before_tree = self.guard.snapshot()
        before = set(self.guard.violations())
        result = self.inner.run(args)
        new = [v for v in self.guard.violations() if v not in before]
        if not new:
            if self.name == "run_tests" and result.ok and result.data.get("exit_code") == 0:
                key = ((args.target or "").strip(), self.guard.snapshot())
                self.guard.green_runs[key] = result.data.get("tests", [])
            return result
        paths = {violation.path for violation in new}
        self.guard.restore(before_tree, paths)
        for path in paths:
            self.on_change(path)
        self.guard.reverted.extend(new)
        note = explain(new) + f"\nThis call's changes to {', '.join(sorted(paths))} were undone."
        if self.name in PATH_TOOLS:
            return ToolResult.error(f"{self.name} refused: {note}")
        return ToolResult(
            text=f"{result.text}\n\nNote: {note}",
            ok=False,
            data=result.data,
            timed_out=result.timed_out,
            duration=result.duration,
        )

    def _refuse_read_only(self, path: str) -> None:
        real = self.jail.resolve(path, write=True)
        reason = self.guard.contract.protected_reason(self.jail.relative(real))
        if reason:
            raise ToolError(f"{self.name} refused: {reason}")

    def _finish(self, args: ToolArgs) -> ToolResult:
        violations = self.guard.violations()
        if violations:
            return ToolResult.error("finish refused: " + explain(violations))
        problem = self.guard.on_finish()
        if problem:
            return ToolResult.error("finish refused: " + problem)
        return self.inner.run(args)


def guard_registry(registry: Registry, guard: ContractGuard) -> Registry:
    """The same tools, each checked against the contract when it changes files or finishes."""
    context = registry.context  # type: ignore[attr-defined]
    guarded = []
    for name in registry.names():
        tool = registry[name]
        if name == "finish" or getattr(tool, "mutates", True):
            tool = GuardedTool(tool, guard, context.jail, context.file_changed)
        guarded.append(tool)
    return Registry(guarded)
