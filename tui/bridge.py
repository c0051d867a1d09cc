"""The UI's handle on the agent. Every method here blocks, so the app calls them from worker threads;
results reach the UI only as messages posted through `post` (thread-safe).

One `AgentRun` (workspace, sandbox, session file, agent) is opened at the first prompt and kept for the
conversation; `/clear` closes it, `/sessions` swaps in a saved one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from dsagent.agent.approval import ApprovalDecision as AgentDecision
from dsagent.agent.events import ApprovalRequested, Event
from dsagent.agent.render import sandbox_output
from dsagent.config import Settings, find_repo_root, parse_model_spec
from dsagent.tui import messages as ui
from dsagent.tui.adapter import EventAdapter
from dsagent.tui.approval_diff import proposed_diff
from dsagent.tui.session_ops import edits, reverse_apply, session_entries
from dsagent.tui.session_picker import SessionEntry
from textual.message import Message

CLOSE_GRACE = 15.0  # seconds a cancelled turn gets to wind down before its workspace is removed


class AgentBridge:
    def __init__(self, settings: Settings, repo: Path, post: Callable[[Message], Any], sandbox: bool = True) -> None:
        self.settings = settings
        self.repo = find_repo_root(repo)
        self.post = post
        self.use_sandbox = sandbox
        self.run: Any = None  # AgentRun, opened at the first prompt
        self.backend: Any = None
        self._lock = threading.RLock()
        self._cancelled = threading.Event()
        self._adapter = EventAdapter()
        self._undone: list[str] = []  # edits the user reverted, told to the model with the next message
        self._reverted: set[str] = set()  # call ids of those edits
        self._sandbox_state = "off" if not sandbox else "not started"
        self._test_runs = 0
        self._idle = threading.Event()  # clear while a turn or a test run is in progress
        self._idle.set()

    # --- turns ---------------------------------------------------------------------------------------

    def run_turn(self, text: str) -> None:
        """Send one user message and block until the agent's turn ends (posting its events)."""
        self._cancelled.clear()
        self._idle.clear()
        try:
            self._turn(text)
        finally:
            self._idle.set()

    def _turn(self, text: str) -> None:
        try:
            run = self._ensure_run(text)
        except Exception as exc:  # setup failures are expected conditions: one readable line
            self.post(ui.TurnStarted(text))
            self.post(ui.AgentFailed(str(exc)))
            self.post(ui.TurnEnded("error"))
            return
        if self._undone:
            text = "[Note: the user reverted your edits: " + "; ".join(self._undone) + ".]\n\n" + text
            self._undone.clear()
        run.agent.send(text)

    def cancel(self) -> None:
        """Stop the running step or tool; an open approval is answered `deny`."""
        self._cancelled.set()
        with self._lock:
            if self.run is not None:
                self.run.agent.cancel()
            if self._tests_tool() is not None:
                cancel = getattr(self._tests_tool(), "cancel", None)
                if callable(cancel):
                    cancel()

    def _on_event(self, event: Event) -> None:
        for message in self._adapter.convert(event):
            self.post(message)

    def _approve(self, request: ApprovalRequested) -> AgentDecision:
        """Called on the agent's thread: show the modal and wait for the answer (or a cancel)."""
        diff = proposed_diff(self.run.workspace.root, request.name, request.arguments) if self.run else None
        asked = ui.ApprovalRequest(request.name, request.arguments, request.command, diff, request.reason)
        future: Future[ui.ApprovalDecision] = Future()
        self.post(ui.ApprovalRequested(asked, future))
        while True:
            try:
                decision = future.result(timeout=0.1)
                break
            except FutureTimeout:
                if self._cancelled.is_set():
                    future.set_result(ui.ApprovalDecision("deny", "cancelled"))
        return AgentDecision(choice=decision.choice, note=decision.note)

    # --- opening and closing runs ------------------------------------------------------------------

    def _ensure_backend(self) -> Any:
        from dsagent.agent.backend import make_backend

        if self.backend is None:
            self.post(ui.ActivityChanged(f"loading {self.settings.model.backend} model"))
            self.backend = make_backend(self.settings, self.repo)
        return self.backend

    def _ensure_run(self, task: str = "", saved: Any = None) -> Any:
        with self._lock:
            if self.run is not None:
                return self.run
            from dsagent.agent.runner import AgentRun, RunSetupError

            backend = self._ensure_backend()
            common = dict(task=task, sinks=[self._on_event], approve=self._approve, saved=saved)
            sandbox = self.use_sandbox
            if sandbox:
                self.post(ui.ActivityChanged("starting sandbox"))
                self._set_sandbox("starting")
            try:
                self.run = AgentRun(self.settings, self.repo, backend, sandbox=sandbox, **common)
            except RunSetupError as exc:
                if not sandbox or exc.code != 3:
                    self._set_sandbox("off")
                    raise
                # No Docker: work without run_shell/run_tests rather than not at all.
                self.post(ui.Notice(f"sandbox unavailable, run_shell and run_tests are off: {exc}", error=True))
                self.run = AgentRun(self.settings, self.repo, backend, sandbox=False, **common)
                sandbox = False
            self._set_sandbox("ready" if sandbox else "off")
            return self.run

    def _set_sandbox(self, state: str) -> None:
        self._sandbox_state = state
        self.post(ui.SandboxChanged(state))

    def sandbox_state(self) -> str:
        return self._sandbox_state

    def _close_run(self) -> None:
        with self._lock:
            if self.run is not None:
                self.run.close()
                self.run = None
                self._set_sandbox("off" if not self.use_sandbox else "not started")
            self._adapter = EventAdapter()
            self._undone.clear()
            self._reverted.clear()

    def new_session(self) -> None:
        saved = self.run.session_path if self.run is not None else None
        self._close_run()
        if saved is not None:
            self.post(ui.Notice(f"new conversation; the last one is saved ({saved.stem}): /sessions resumes it"))

    def close(self) -> None:
        self.cancel()
        self._idle.wait(CLOSE_GRACE)
        self._close_run()
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    # --- commands --------------------------------------------------------------------------------------

    def patch(self) -> str:
        return self.run.workspace.patch() if self.run is not None else ""

    def live_output(self) -> str:
        """What the sandbox command running now has printed so far ("" when none runs)."""
        return sandbox_output(self.run)

    def apply(self) -> None:
        if self.run is None:
            self.post(ui.Notice("nothing to apply yet"))
            return
        result = self.run.workspace.apply_to_user_tree()
        files = f" ({', '.join(result.files)})" if result.applied and result.files else ""
        self.post(ui.Notice(result.message + files, error=not result.applied))

    def undo(self) -> None:
        """Revert the most recent edit still in the workspace (walks back on each call)."""
        from dsagent.agent.session import save_patch

        found = edits(self.run.session_path, self._reverted) if self.run is not None else []
        if not found:
            self.post(ui.Notice("no edit left to undo"))
            return
        call_id, path, diff = found[-1]
        problem = reverse_apply(self.run.workspace.root, diff)
        if problem is not None:
            self.post(ui.Notice(f"cannot undo the edit of {path}: {problem}", error=True))
            return
        self._reverted.add(call_id)
        self._undone.append(path)
        save_patch(self.run.session_path, self.run.workspace.patch_bytes())
        self.post(ui.Notice(f"reverted the last edit of {path}; the model hears of it with your next message"))

    def run_tests(self, target: str | None) -> None:
        """The user's own test run, shown as a tool card (the model does not see it)."""
        self._cancelled.clear()
        self._idle.clear()
        try:
            self._tests(target)
        finally:
            self._idle.set()

    def _tests(self, target: str | None) -> None:
        try:
            self._ensure_run()
        except Exception as exc:
            self.post(ui.AgentFailed(str(exc)))
            return
        if self._tests_tool() is None:
            self.post(ui.Notice("run_tests needs the Docker sandbox, which is off", error=True))
            return
        self._test_runs += 1
        call_id, arguments = f"user-tests-{self._test_runs}", {"target": target} if target else {}
        self.post(ui.ToolStarted(call_id, "run_tests", arguments))
        result = self.run.registry.call("run_tests", arguments)
        self.post(
            ui.ToolFinished(
                call_id, "run_tests", result.ok, result.text, result.duration, result.timed_out, dict(result.data)
            )
        )

    def _tests_tool(self) -> Any:
        run = self.run
        return run.registry["run_tests"] if run is not None and "run_tests" in run.registry else None

    def model_description(self) -> str:
        model = self.settings.model
        where = model.path or "(model.path not set)"
        name = f" #{model.name}" if model.name else ""
        return f"model: {model.backend}:{where}{name} (context {model.max_context} tokens)"

    def set_model(self, spec: str) -> None:
        """Switch the backend in place: the conversation and workspace stay; the next step uses the new model."""
        from dsagent.agent.backend import make_backend

        settings = self._settings_for(spec)
        backend = make_backend(settings, self.repo)
        model = settings.model
        with self._lock:
            old, self.backend, self.settings = self.backend, backend, settings
            if self.run is not None:
                self.run.agent.backend = backend
        if old is not None:
            old.close()
        self.post(ui.SessionOpened("", model.backend, Path(model.path or "").name))
        self.post(ui.Notice(self.model_description()))

    def _settings_for(self, spec: str) -> Settings:
        flags = parse_model_spec(spec)
        update = {key.split(".", 1)[1]: value for key, value in flags.items()}
        update.setdefault("name", None)
        return self.settings.model_copy(update={"model": self.settings.model.model_copy(update=update)})

    # --- sessions ------------------------------------------------------------------------------------

    def sessions(self) -> list[SessionEntry]:
        return session_entries(self.repo)

    def resume(self, session_id: str) -> None:
        """Close the current conversation, open the saved one, and replay it into the view."""
        from dsagent.agent.cli import _model_spec, _skip_replayed_script
        from dsagent.agent.session import find_session, load_session

        saved = load_session(find_session(self.repo, session_id))
        self._close_run()
        # A fresh backend for the session's own model (a scripted one must start where the session stopped).
        spec = _model_spec(saved.header.model)
        if spec:
            self.settings = self._settings_for(spec)
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        backend = self._ensure_backend()
        _skip_replayed_script(backend, saved)
        replay = EventAdapter()
        for event in saved.events:
            if event.type not in ("reasoning_delta", "content_delta"):  # the finished messages carry the text
                for message in replay.convert(event):
                    self.post(message)
        self._ensure_run(saved.header.task, saved=saved)
        self.post(ui.Notice(f"resumed session {saved.id}; your next message continues it"))
