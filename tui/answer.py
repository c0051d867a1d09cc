"""The model's answer for one step, streamed as Markdown."""

from __future__ import annotations

from dsagent.tui.coalesce import Coalescer
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownStream


class Answer(Markdown):
    DEFAULT_CSS = """
    Answer {
        margin: 0 0 1 0;
        padding: 0 1;
        background: transparent;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._stream: MarkdownStream | None = None
        self._coalescer = Coalescer(self, self._draw)
        self.text = ""  # everything received, including fragments not drawn yet
        self._drawn = ""

    async def write(self, text: str) -> None:
        """Append a fragment; fragments are drawn in batches, a few per second, through MarkdownStream."""
        self.text += text
        self._coalescer.add(text)

    @property
    def caught_up(self) -> bool:
        """Everything received went to the Markdown stream (no fragment waits for the next batch)."""
        return self._drawn == self.text

    async def _draw(self, text: str) -> None:
        self._drawn += text
        if self._stream is None:
            self._stream = Markdown.get_stream(self)
        await self._stream.write(text)

    async def finish(self) -> None:
        await self._coalescer.drain()
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None


if __name__ == "__main__":
    import asyncio

    from textual.app import App, ComposeResult

    ANSWER = "The bug is in `add`: it **subtracts**.\n\n```python\nreturn a + b\n```\n\n- fixed\n- tested\n"

    class AnswerDemo(App):
        def compose(self) -> ComposeResult:
            yield Answer()

        async def on_mount(self) -> None:
            self.run_worker(self.stream())

        async def stream(self) -> None:
            answer = self.query_one(Answer)
            for index in range(0, len(ANSWER), 4):
                await answer.write(ANSWER[index : index + 4])
                await asyncio.sleep(0.03)
            await answer.finish()

    AnswerDemo().run()
