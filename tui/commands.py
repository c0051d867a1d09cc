"""Slash commands typed in the prompt. Anything that touches git, Docker or the agent runs in a worker,
so the UI never waits on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dsagent.tui.diff_view import DiffView
from dsagent.tui.session_picker import SessionPicker
from dsagent.words import counted
from textual.worker import Worker

if TYPE_CHECKING:
    from dsagent.tui.app import DsagentApp

COMMANDS = {
    "/diff": "show the session's patch (every change made so far)",
    "/apply": "apply the session's patch to your working tree",
    "/undo": "revert the last edit in the workspace",
    "/tests": "run the tests (optionally a target: /tests tests/test_x.py::test_y)",
    "/model": "show the model; /model local:PATH | openai:URL[#name] | scripted:FILE switches",
    "/sessions": "pick a saved session and resume it",
    "/clear": "start a new conversation",
    "/help": "list the commands",
    "/quit": "leave",
}
# Commands that change the agent's state cannot run while it is working.
NEEDS_IDLE = {"/apply", "/undo", "/tests", "/model", "/sessions", "/clear"}


# Failures the user can fix; their message already says how, so it is shown as is.
EXPECTED_ERRORS = {"ConfigError", "BackendError", "SessionError", "WorkspaceError", "RunSetupError", "SandboxError"}


def describe_error(exc: Exception) -> str:
    name = type(exc).__name__
    return str(exc) if name in EXPECTED_ERRORS else f"{name}: {exc}"


def parse_command(text: str) -> tuple[str, str]:
    """'/tests  tests/x.py' -> ('/tests', 'tests/x.py')."""
    name, _, arg = text.strip().partition(" ")
    return name.lower(), arg.strip()


class CommandsMixin:
    """The command handlers of DsagentApp (kept apart to keep each file short)."""

    async def run_command(self: DsagentApp, text: str) -> None:
        name, arg = parse_command(text)
        chat = self.conversation
        if name not in COMMANDS:
            await chat.add_notice(f"unknown command {name}; /help lists the commands", error=True)
            return
        if name in NEEDS_IDLE and self.busy:
            await chat.add_notice(f"{name} waits until the agent is done (Esc cancels it)", error=True)
            return
        handler: Callable[[str], Any] = getattr(self, "command_" + name[1:])
        await handler(arg)

    def in_thread(self: DsagentApp, function: Callable[..., Any], *args: Any, busy: str = "") -> Worker:
        """Run a blocking bridge call off the UI thread; errors become a red notice. With `busy`, the
        app shows that activity (and Esc can cancel) until the call returns."""
        if busy:
            self.set_busy(True, busy)

        async def runner() -> None:
            try:
                await asyncio.to_thread(function, *args)
            except Exception as exc:  # shown to the user; the app keeps running
                await self.conversation.add_notice(describe_error(exc), error=True)
            finally:
                if busy:
                    self.set_busy(False)

        return self.run_worker(runner(), group="commands", exit_on_error=False)

    async def command_help(self: DsagentApp, arg: str) -> None:
        lines = [f"{name:<10} {meaning}" for name, meaning in COMMANDS.items()]
        lines.append("Esc cancels the running step; Up/Down recall earlier prompts; Ctrl+T switches the theme.")
        await self.conversation.add_notice("\n".join(lines))

    async def command_diff(self: DsagentApp, arg: str) -> None:
        async def show() -> None:
            try:
                patch = await asyncio.to_thread(self.bridge.patch)
            except Exception as exc:
                await self.conversation.add_notice(f"/diff: {exc}", error=True)
                return
            if not patch.strip():
                await self.conversation.add_notice("no changes yet")
                return
            files = sum(1 for line in patch.splitlines() if line.startswith("+++ "))
            await self.conversation.add_notice(f"session patch: {counted(files, 'file')} changed")
            await self.conversation.mount(DiffView(patch, classes="patch"))

        self.run_worker(show(), group="commands", exit_on_error=False)

    async def command_apply(self: DsagentApp, arg: str) -> None:
        self.in_thread(self.bridge.apply)

    async def command_undo(self: DsagentApp, arg: str) -> None:
        self.in_thread(self.bridge.undo)

    async def command_tests(self: DsagentApp, arg: str) -> None:
        self.in_thread(self.bridge.run_tests, arg or None, busy="running tests")

    async def command_model(self: DsagentApp, arg: str) -> None:
        if not arg:
            await self.conversation.add_notice(self.bridge.model_description())
            return
        self.in_thread(self.bridge.set_model, arg)

    async def command_sessions(self: DsagentApp, arg: str) -> None:
        async def pick() -> None:
            entries = await asyncio.to_thread(self.bridge.sessions)
            session_id = await self.push_screen_wait(SessionPicker(entries))
            if session_id:
                await self.conversation.clear()
                self.in_thread(self.bridge.resume, session_id, busy="resuming")

        self.run_worker(pick(), group="commands", exit_on_error=False)

    async def command_clear(self: DsagentApp, arg: str) -> None:
        await self.conversation.clear()
        self.status_bar.step = 0
        self.in_thread(self.bridge.new_session)

    async def command_quit(self: DsagentApp, arg: str) -> None:
        self.exit()
