"""The pairing UI: `dsagent` with no arguments opens it.

The agent runs in a worker thread (see bridge.py) and posts UI messages; the handlers below only
mount and update widgets, so the UI stays live while the model generates and tools run."""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsagent.config import Settings
from dsagent.tui import messages as ui
from dsagent.tui.approval import ApprovalScreen
from dsagent.tui.bridge import AgentBridge
from dsagent.tui.commands import CommandsMixin
from dsagent.tui.conversation import Conversation
from dsagent.tui.notice import NoticeLine
from dsagent.tui.prompt_input import PromptInput
from dsagent.tui.status_bar import StatusBar
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Footer


def from_agent(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Agent messages can still arrive while the app shuts down (the worker is being cancelled); by then
    the widgets are gone, so they are dropped."""

    @functools.wraps(handler)
    async def guarded(self: DsagentApp, message: Message) -> None:
        if self.is_running:
            result = handler(self, message)
            if inspect.isawaitable(result):
                await result

    return guarded


NO_MODEL = (
    "no model configured: start with --model local:PATH | openai:URL[#name] | scripted:FILE, "
    "set [model] path in .dsagent.toml, or switch here with /model"
)
TURN_ENDINGS = {
    "finished": "done",
    "answered": "",
    "max_steps": "stopped: reached agent.max_steps",
    "max_generated_tokens": "stopped: reached agent.max_generated_tokens",
    "max_wall_time": "stopped: reached agent.max_wall_time",
    "max_new_tokens": "stopped: the reply was cut at model.sampling.max_new_tokens (or a full context)",
    "repeated_failure": "stopped: the same call kept failing",
    "cancelled": "cancelled",
    "error": "",  # the error itself is already shown
}


class DsagentApp(CommandsMixin, App):
    CSS_PATH = "app.tcss"
    TITLE = "dsagent"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel step"),
        Binding("ctrl+g", "command('/diff')", "Diff"),
        Binding("ctrl+o", "command('/sessions')", "Sessions"),
        Binding("ctrl+t", "toggle_theme", "Theme"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, settings: Settings, repo: Path | None = None, sandbox: bool = True) -> None:
        super().__init__()
        self.settings = settings
        self.repo = (repo or Path.cwd()).resolve()
        self.bridge = AgentBridge(settings, self.repo, self.post_message, sandbox=sandbox)
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Conversation(show_reasoning=self.settings.ui.show_reasoning)
        with Vertical(id="prompt-box"):
            yield PromptInput(placeholder="Ask, or /help (Enter sends, Shift+Enter: new line)", id="prompt")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        # The agent, the engine and the tools run in threads of this process. With the default 5 ms GIL
        # switch interval a key press that needs many short turns of the event loop waits 5 ms for
        # each while a worker computes; 1 ms keeps typing prompt at little cost to the workers.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        theme = self.settings.ui.theme
        if theme in self.available_themes:
            self.theme = theme
        else:
            self.notify(f"unknown theme {theme!r}; set ui.theme to one of: {', '.join(self.available_themes)}")
        bar = self.status_bar
        bar.backend, bar.model = self.settings.model.backend, Path(self.settings.model.path or "").name
        bar.context_limit = self.settings.model.max_context
        bar.sandbox = self.bridge.sandbox_state()
        self.conversation.mount(NoticeLine(f"dsagent in {self.repo.name}: type a task; /help lists the commands"))
        if not self.settings.model.path:
            self.conversation.mount(NoticeLine(NO_MODEL, error=True))
        self.query_one(PromptInput).focus()

    @property
    def conversation(self) -> Conversation:
        return self.query_one(Conversation)

    @property
    def status_bar(self) -> StatusBar:
        return self.query_one(StatusBar)

    def set_busy(self, busy: bool, activity: str = "idle") -> None:
        self.busy = busy
        self.query_one("#prompt-box").set_class(busy, "-busy")
        self.status_bar.activity = activity if busy else "idle"

    # The user's side -------------------------------------------------------------------------

    async def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
        text = message.text
        if text.startswith("/"):
            await self.run_command(text)
            return
        if self.busy:
            await self.conversation.add_notice("the agent is still working; wait, or press Esc to cancel", error=True)
            return
        self.set_busy(True, "starting")
        self.start_turn(text)

    @work(thread=True, group="agent", exit_on_error=False)
    def start_turn(self, text: str) -> None:
        self.bridge.run_turn(text)

    def action_cancel(self) -> None:
        if self.busy:
            self.status_bar.activity = "cancelling"
            self.bridge.cancel()

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    async def action_command(self, command: str) -> None:
        await self.run_command(command)

    # The agent's side (messages posted from the worker thread) ------------------------------

    @from_agent
    def on_session_opened(self, message: ui.SessionOpened) -> None:
        self.status_bar.backend, self.status_bar.model = message.backend, message.model

    @from_agent
    async def on_turn_started(self, message: ui.TurnStarted) -> None:
        await self.conversation.add_user(message.text)

    @from_agent
    async def on_step_started(self, message: ui.StepStarted) -> None:
        await self.conversation.start_step()
        self.status_bar.step = message.step
        if self.busy:
            self.status_bar.activity = "thinking"

    @from_agent
    async def on_reasoning_delta(self, message: ui.ReasoningDelta) -> None:
        await self.conversation.reasoning(message.text)

    @from_agent
    async def on_answer_delta(self, message: ui.AnswerDelta) -> None:
        if self.busy:
            self.status_bar.activity = "writing"
        await self.conversation.answer(message.text)

    @from_agent
    async def on_step_ended(self, message: ui.StepEnded) -> None:
        await self.conversation.end_step()

    @from_agent
    async def on_tool_started(self, message: ui.ToolStarted) -> None:
        live = None
        if self.busy:  # a call running now, not one replayed from a saved session
            self.status_bar.activity = f"running {message.name}"
            live = self.bridge.live_output
        await self.conversation.tool_started(message.call_id, message.name, message.arguments, live=live)

    @from_agent
    async def on_tool_finished(self, message: ui.ToolFinished) -> None:
        await self.conversation.tool_finished(
            message.call_id,
            message.name,
            message.ok,
            message.output,
            message.duration,
            message.timed_out,
            message.data,
        )

    @from_agent
    def on_approval_requested(self, message: ui.ApprovalRequested) -> None:
        future = message.future
        previous = self.status_bar.activity
        self.status_bar.activity = "approval needed"

        def answered(decision: ui.ApprovalDecision | None) -> None:
            if not future.done():
                future.set_result(decision or ui.ApprovalDecision("deny"))
            if self.busy:
                self.status_bar.activity = previous

        if future.done():  # cancelled before the modal could open
            return
        self.push_screen(ApprovalScreen(message.request), answered)

    @from_agent
    def on_usage_updated(self, message: ui.UsageUpdated) -> None:
        self.status_bar.apply(message.usage)

    @from_agent
    def on_activity_changed(self, message: ui.ActivityChanged) -> None:
        if self.busy:
            self.status_bar.activity = message.activity

    @from_agent
    def on_sandbox_changed(self, message: ui.SandboxChanged) -> None:
        self.status_bar.sandbox = message.state

    @from_agent
    async def on_turn_ended(self, message: ui.TurnEnded) -> None:
        if isinstance(self.screen, ApprovalScreen):  # left open by a cancelled turn: it answers nobody now
            self.screen.dismiss(None)
        chat = self.conversation
        await chat.end_step()
        await chat.fail_running_tools("cancelled")
        if message.reason == "finished" and message.summary:
            await chat.answer(message.summary)
            await chat.end_step()
        ending = TURN_ENDINGS.get(message.reason, message.reason)
        if ending:
            await chat.add_notice(ending, error=message.reason not in ("finished", "cancelled"))
        self.set_busy(False)

    @from_agent
    async def on_agent_failed(self, message: ui.AgentFailed) -> None:
        await self.conversation.add_notice(message.message, error=True)

    @from_agent
    async def on_notice(self, message: ui.Notice) -> None:
        await self.conversation.add_notice(message.text, error=message.error)

    async def on_unmount(self) -> None:
        await asyncio.to_thread(self.bridge.close)


def run_tui(settings: Settings, repo: Path | None = None) -> None:
    """Open the pairing UI (the `dsagent` command with no arguments)."""
    DsagentApp(settings, repo).run()


if __name__ == "__main__":
    from dsagent.config import load_settings

    run_tui(load_settings().settings)
