"""How a fix ends: the final contract check and verification, the patch file, and the delivery
(`--apply`, `--branch`, or the patch alone), each outcome with its exit code."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsagent.agent.events import LIMIT_REASONS, Patch
from dsagent.agent.fix_contract import TestContract
from dsagent.agent.fix_events import FixFinished, FixVerified
from dsagent.agent.fix_verify import Verification

if TYPE_CHECKING:
    from dsagent.agent.fix import FixRun
    from dsagent.agent.fix_pytest import PytestRunner


def conclude(fix: FixRun, runner: PytestRunner, result: Any) -> FixFinished:
    """After the agent's turn: check and verify once more, write the patch, deliver a verified fix."""
    contract = TestContract(fix.workspace.root, fix.target_files(), fix.options.allow_test_edits)
    violations = contract.check_patch(fix.workspace.patch())
    verification, _ = fix.verify(runner)
    fix.emit(
        FixVerified(
            rows=verification.rows,
            target_passes=verification.target_passes,
            regressions=[row.test for row in verification.regressions],
            contract=[v.describe() for v in violations],
        )
    )
    patch_path = write_patch(fix)
    summary = result.summary if result.reason == "finished" else ""
    common = dict(summary=summary, patch_path=patch_path, session_id=fix.session_id)
    if violations:
        message = (
            "the patch breaks the test contract ("
            + "; ".join(v.describe() for v in violations)
            + "); it was not applied"
        )
        return FixFinished(outcome="rejected", exit_code=1, message=message, **common)
    if verification.ok:
        return _deliver(fix, common)
    return _not_fixed(fix, result, verification, common)


def _not_fixed(fix: FixRun, result: Any, verification: Verification, common: dict[str, Any]) -> FixFinished:
    why = (
        "the target still fails"
        if not verification.target_passes
        else f"{len(verification.regressions)} test(s) that passed before now fail"
    )
    if result.reason in LIMIT_REASONS:
        return FixFinished(outcome="limit", exit_code=4, message=f"stopped: {result.summary}; {why}", **common)
    error = getattr(fix.session, "last_error", None)
    if result.reason == "error" and error is not None and error.kind != "script":
        return FixFinished(outcome="environment_error", exit_code=3, message=f"the model failed: {error}", **common)
    ended = f"the agent ended ({result.reason}" + (f": {result.summary}" if result.summary else "") + ")"
    return FixFinished(outcome="not_fixed", exit_code=1, message=f"not fixed: {why}; {ended}", **common)


def _deliver(fix: FixRun, common: dict[str, Any]) -> FixFinished:
    from dsagent.sandbox.workspace import WorkspaceError

    options, target = fix.options, fix.target.spec
    if options.apply:
        applied = fix.workspace.apply_to_user_tree()
        if not applied.applied:
            return FixFinished(
                outcome="not_fixed",
                exit_code=1,
                message=f"fixed {target} in the workspace, but {applied.message}; apply the patch by hand",
                **common,
            )
        return FixFinished(
            outcome="fixed",
            exit_code=0,
            applied=True,
            message=f"fixed {target}; {applied.message} in your working tree",
            **common,
        )
    if options.branch:
        text = f"Fix {target}\n\n{common['summary']}".strip() + "\n\nMade by dsagent fix."
        try:
            commit = fix.workspace.commit_to_branch(options.branch, text)
        except WorkspaceError as exc:
            return FixFinished(outcome="not_fixed", exit_code=1, message=f"fixed {target}, but {exc}", **common)
        return FixFinished(
            outcome="fixed",
            exit_code=0,
            branch=options.branch,
            commit=commit,
            message=f"fixed {target}; committed {commit[:12]} on branch {options.branch}",
            **common,
        )
    how = f"`git apply {common['patch_path']}` in the repository"
    return FixFinished(
        outcome="fixed",
        exit_code=0,
        message=f"fixed {target}; review the patch, then apply it with {how} (or re-run with --apply / --branch NAME)",
        **common,
    )


def write_patch(fix: FixRun) -> str:
    data = fix.workspace.patch_bytes()
    path = fix.options.patch_file or default_patch_path(fix.workspace.repo, fix.session_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    fix.emit(
        Patch(
            diff=data.decode("utf-8", errors="replace"),
            files=fix.workspace.changed_files(),
            path=str(path),
        )
    )
    return str(path)


def check_branch(repo: Path, name: str) -> None:
    """Refuse a bad or existing branch name before any work is done."""
    from dsagent.agent.fix import FixStop

    valid = subprocess.run(["git", "check-ref-format", "--branch", name], cwd=repo, capture_output=True)
    if valid.returncode != 0:
        raise FixStop("usage_error", f"--branch {name!r} is not a valid branch name")
    exists = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{name}"], cwd=repo, capture_output=True
    )
    if exists.returncode == 0:
        raise FixStop("usage_error", f"branch {name!r} already exists; choose another name with --branch")


def default_patch_path(repo: Path, session_id: str | None) -> Path:
    """`.dsagent/patches/fix-<session>.patch`; `.dsagent/` holds a `*` .gitignore so git never sees it."""
    folder = repo / ".dsagent"
    folder.mkdir(exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    return folder / "patches" / f"fix-{session_id or time.strftime('%Y%m%d-%H%M%S')}.patch"
