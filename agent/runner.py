"""Everything one run needs, opened together and closed in reverse: the isolated workspace, the sandbox
container and its tools, the session file, and the agent. `dsagent run`, `dsagent resume` and front
ends built on the agent (the TUI, `dsagent fix`) open an `AgentRun` and call `agent.run(...)` on it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsagent.agent.approval import ApprovalCallback
from dsagent.agent.backend import Backend
from dsagent.agent.events import Event, Patch
from dsagent.agent.loop import Agent
from dsagent.agent.prompt import system_prompt
from dsagent.agent.session import SavedSession, SessionHeader, SessionWriter, new_session_id, patch_path, save_patch

if TYPE_CHECKING:
    from dsagent.config import Settings
    from dsagent.tools.base import Registry


class RunSetupError(Exception):
    """A run could not start; `code` is the exit status (2 usage/config, 3 environment)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class AgentRun:
    def __init__(
        self,
        settings: Settings,
        repo: Path,
        backend: Backend,
        *,
        task: str = "",
        sinks: Iterable[Callable[[Event], None]] = (),
        approve: ApprovalCallback | None = None,
        sandbox: bool = True,
        saved: SavedSession | None = None,
        replay_of: str | None = None,
    ) -> None:
        from dsagent.sandbox.workspace import Workspace, WorkspaceError

        self.settings = settings
        self.sinks = list(sinks)
        self.sandbox: Any = None
        self.writer: SessionWriter | None = None
        try:
            self.workspace = Workspace(repo)
        except WorkspaceError as exc:
            raise RunSetupError(f"{exc} (the agent works in a git worktree of the repository)", 2) from None
        try:
            if saved is not None:
                self._restore_patch(saved)
            self.registry = self._tools(sandbox)
            self.agent = self._agent(backend, approve, task, saved, replay_of)
        except BaseException:
            self.close()
            raise

    @property
    def session_path(self) -> Path:
        assert self.writer is not None
        return self.writer.path

    def _tools(self, sandbox: bool) -> Registry:
        from dsagent.tools.registry import default_registry

        registry = default_registry(self.workspace.root, index_dir=self.workspace.index_dir)
        if sandbox:
            self.sandbox = start_sandbox(self.workspace.root, self.settings)
            add_sandbox_tools(registry, self.sandbox, self.settings)
        return registry

    def _agent(
        self,
        backend: Backend,
        approve: ApprovalCallback | None,
        task: str,
        saved: SavedSession | None,
        replay_of: str | None,
    ) -> Agent:
        if saved is not None:
            system = saved.header.system or system_prompt(self.workspace.root, self.settings.agent.approval)
            self.writer = SessionWriter.append_to(saved.path)
            session_id = saved.id
        else:
            system = system_prompt(self.workspace.root, self.settings.agent.approval)
            session_id = new_session_id()
            header = SessionHeader(
                session_id=session_id,
                repo=str(self.workspace.repo),
                task=task,
                model=backend.identity,
                config=self.settings.model_dump(mode="json"),
                system=system,
                replay_of=replay_of,
            )
            self.writer = SessionWriter.create(self.workspace.repo, header)
        agent = Agent(
            backend,
            self.registry,
            self.settings,
            approve,
            self._dispatch,
            repo=self.workspace.root,
            system=system,
            session_id=session_id,
        )
        if saved is not None:
            agent.restore(saved)
        return agent

    def _restore_patch(self, saved: SavedSession) -> None:
        patch = patch_path(saved.path)
        if not patch.is_file() or patch.stat().st_size == 0:
            return
        done = subprocess.run(
            ["git", "apply", "--binary", "--whitespace=nowarn", str(patch)],
            cwd=self.workspace.root,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RunSetupError(
                f"the session's changes ({patch}) no longer apply to the repository: "
                f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'conflict'}; "
                "undo the conflicting edits or start a new run",
                1,
            )

    def _dispatch(self, event: Event) -> None:
        assert self.writer is not None
        if event.type == "tool_call_finished" and self._mutates(event.name):
            # The change is saved before the result that reports it: a crash in between leaves the call
            # unanswered (its effect "unknown" on resume), never a recorded edit missing from the patch.
            save_patch(self.writer.path, self.workspace.patch_bytes())
        self.writer(event)
        for sink in self.sinks:
            sink(event)

    def _mutates(self, name: str) -> bool:
        return name in self.registry and bool(getattr(self.registry[name], "mutates", True))

    def finish(self, patch_file: Path | None = None) -> Patch:
        """The run's change: written to `patch_file` when given, recorded, and shown to every sink."""
        data = self.workspace.patch_bytes()
        if patch_file is not None:
            patch_file.write_bytes(data)
        event = Patch(
            diff=data.decode("utf-8", errors="replace"),
            files=self.workspace.changed_files(),
            path=str(patch_file) if patch_file else None,
        )
        self._dispatch(event)
        return event

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.sandbox is not None:
            self.sandbox.close()
        self.workspace.cleanup()


def start_sandbox(root: Path, settings: Settings) -> Any:
    from dsagent.sandbox.base import SandboxError
    from dsagent.sandbox.container import DockerSandbox

    try:
        return DockerSandbox(root, settings.sandbox).start()
    except SandboxError as exc:
        raise RunSetupError(f"{exc} (or pass --no-sandbox to run without run_shell/run_tests)", 3) from None


def add_sandbox_tools(registry: Registry, sandbox: Any, settings: Settings) -> None:
    from dsagent.tools.shell import RunShell
    from dsagent.tools.tests import RunTests

    registry.add(RunShell(sandbox))
    registry.add(RunTests(sandbox, settings.sandbox))
