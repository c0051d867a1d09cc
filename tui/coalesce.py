"""Streamed text arrives in small fragments, often a hundred a second. Rendering each one would keep the
event loop busy and make keys wait; a Coalescer hands the fragments on in batches, at most every
`interval` seconds, so rendering cost follows the screen's frame rate, not the model's speed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.timer import Timer
from textual.widget import Widget

FRAME = 1 / 15  # seconds between batches: smooth to the eye, cheap for the loop


class Coalescer:
    def __init__(self, owner: Widget, flush: Callable[[str], Awaitable[None]], interval: float = FRAME) -> None:
        self.owner = owner
        self.flush = flush
        self.interval = interval
        self._pending: list[str] = []
        self._timer: Timer | None = None

    def add(self, text: str) -> None:
        if not text:
            return
        self._pending.append(text)
        if self._timer is None:
            self._timer = self.owner.set_timer(self.interval, self._due)

    async def _due(self) -> None:
        self._timer = None
        await self.drain()

    async def drain(self) -> None:
        """Hand on whatever is pending now (at the end of a stream)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            await self.flush(text)
