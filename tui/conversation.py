"""The scrolling conversation: prompts, reasoning blocks, answers, tool cards and notices, kept pinned
to the bottom while output streams (until the user scrolls up to read)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dsagent.tui.answer import Answer
from dsagent.tui.notice import NoticeLine
from dsagent.tui.reasoning import ReasoningBlock
from dsagent.tui.tool_card import ToolCard
from dsagent.tui.user_message import UserMessage
from textual.containers import VerticalScroll


class Conversation(VerticalScroll):
    DEFAULT_CSS = """
    Conversation {
        height: 1fr;
        padding: 0 1;
        scrollbar-size-vertical: 1;
    }
    """

    def __init__(self, show_reasoning: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.show_reasoning = show_reasoning
        self._reasoning: ReasoningBlock | None = None
        self._answer: Answer | None = None
        self._cards: dict[str, ToolCard] = {}

    def on_mount(self) -> None:
        self.anchor()

    async def add_user(self, text: str) -> None:
        await self.mount(UserMessage(text))
        self.anchor()

    async def add_notice(self, text: str, error: bool = False) -> NoticeLine:
        line = NoticeLine(text, error=error)
        await self.mount(line)
        return line

    async def start_step(self) -> None:
        await self.end_step()

    async def reasoning(self, text: str) -> None:
        if not self.show_reasoning:
            return
        if self._reasoning is None:
            self._reasoning = ReasoningBlock()
            await self.mount(self._reasoning)
        await self._reasoning.write(text)

    async def answer(self, text: str) -> None:
        if self._answer is None:
            self._answer = Answer()
            await self.mount(self._answer)
        await self._answer.write(text)

    async def end_step(self) -> None:
        """Fold the reasoning and close the answer stream of the step that just ended."""
        reasoning, answer = self._reasoning, self._answer
        self._reasoning = self._answer = None
        if reasoning is not None:
            await reasoning.finish()
        if answer is not None:
            await answer.finish()

    async def tool_started(
        self, call_id: str, name: str, arguments: dict[str, Any], live: Callable[[], str] | None = None
    ) -> ToolCard:
        card = ToolCard(call_id, name, arguments, live=live)
        self._cards[call_id] = card
        await self.mount(card)
        return card

    async def tool_finished(
        self, call_id: str, name: str, ok: bool, output: str, duration: float, timed_out: bool, data: dict[str, Any]
    ) -> ToolCard:
        card = self._cards.pop(call_id, None)
        if card is None:  # a result without a start (e.g. a refused call): show it all the same
            card = await self.tool_started(call_id, name, {})
            self._cards.pop(call_id, None)
        await card.finish(ok, output, duration, timed_out=timed_out, data=data)
        return card

    async def fail_running_tools(self, reason: str) -> None:
        """Mark cards still running as failed (the step was cancelled under them)."""
        for call_id, card in list(self._cards.items()):
            await card.finish(False, reason, 0.0)
            del self._cards[call_id]

    async def clear(self) -> None:
        await self.end_step()
        self._cards.clear()
        await self.remove_children()


if __name__ == "__main__":
    import asyncio

    from textual.app import App, ComposeResult

    class ConversationDemo(App):
        def compose(self) -> ComposeResult:
            yield Conversation()

        async def on_mount(self) -> None:
            self.run_worker(self.play())

        async def play(self) -> None:
            chat = self.query_one(Conversation)
            await chat.add_user("Why does test_add fail?")
            for word in "Let me read the function first.".split():
                await chat.reasoning(word + " ")
                await asyncio.sleep(0.1)
            await chat.end_step()
            await chat.tool_started("1", "read_file", {"path": "calc.py"})
            await asyncio.sleep(0.5)
            await chat.tool_finished("1", "read_file", True, "def add(a, b):\n    return a - b", 0.01, False, {})
            for word in "`add` **subtracts**; it should add.".split():
                await chat.answer(word + " ")
                await asyncio.sleep(0.1)
            await chat.end_step()

    ConversationDemo().run()
