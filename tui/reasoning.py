"""The model's reasoning for one step: streamed open, folded to a one-line summary when the step ends.

It is shown as plain text, one widget per paragraph, so each new fragment re-renders only the paragraph
it lands in (a long trace stays cheap to stream)."""

from __future__ import annotations

from dsagent.tui.coalesce import Coalescer
from dsagent.words import counted
from textual.containers import Vertical
from textual.widgets import Collapsible, Static


class ReasoningBlock(Collapsible):
    DEFAULT_CSS = """
    ReasoningBlock {
        border: none;
        padding: 0;
        margin: 0 0 1 0;
        background: transparent;
    }
    ReasoningBlock > Contents {
        padding: 0 0 0 2;
    }
    ReasoningBlock .paragraphs {
        height: auto;
        border-left: outer $secondary 50%;
        padding: 0 1;
    }
    ReasoningBlock .paragraph {
        color: $text-muted;
        margin: 0 0 1 0;
    }
    ReasoningBlock .paragraph:last-child { margin: 0; }
    ReasoningBlock CollapsibleTitle {
        color: $text-muted;
        text-style: italic;
    }
    """

    def __init__(self, **kwargs) -> None:
        self.body = Vertical(classes="paragraphs")
        super().__init__(self.body, title="Thinking…", collapsed=False, **kwargs)
        self.text = ""  # everything received, including fragments not drawn yet
        self._drawn = ""
        self._paragraphs: list[Static] = []
        self._coalescer = Coalescer(self, self._draw)

    async def write(self, text: str) -> None:
        self.text += text
        self._coalescer.add(text)

    @property
    def caught_up(self) -> bool:
        """Everything received is on screen (no fragment waits for the next batch)."""
        return self._drawn == self.text

    async def _draw(self, text: str) -> None:
        self._drawn += text
        parts = self._drawn.strip("\n").split("\n\n")
        new = [Static(markup=False, classes="paragraph") for _ in range(len(parts) - len(self._paragraphs))]
        if new:
            self._paragraphs += new
            await self.body.mount_all(new)
        # Only the paragraphs this batch touched change: the last one, plus any it just completed.
        touched = max(0, len(parts) - len(new) - 1)
        for widget, part in zip(self._paragraphs[touched:], parts[touched:], strict=False):
            widget.update(part.strip())

    async def finish(self) -> None:
        """Draw what is pending, fold, and say how long the reasoning was."""
        await self._coalescer.drain()
        words = len(self.text.split())
        self.title = f"Thought ({counted(words, 'word')})"
        self.collapsed = True


if __name__ == "__main__":
    import asyncio

    from textual.app import App, ComposeResult

    THOUGHT = (
        "The test expects `add(2, 3) == 5` but the function subtracts.\n\n"
        "I should read `calc.py`, then fix the operator and run the test again."
    )

    class ReasoningDemo(App):
        def compose(self) -> ComposeResult:
            yield ReasoningBlock()

        async def on_mount(self) -> None:
            self.run_worker(self.stream())

        async def stream(self) -> None:
            block = self.query_one(ReasoningBlock)
            for word in THOUGHT.split(" "):
                await block.write(word + " ")
                await asyncio.sleep(0.05)
            await block.finish()

    ReasoningDemo().run()
