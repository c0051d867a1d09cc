"""One line of facts: what the agent is doing, model and backend, context use, prefill vs cache reuse
on the last step, generation speed, step count, sandbox state. Narrow terminals get a compact form."""

from __future__ import annotations

from dsagent.tui.messages import Usage
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


def human(n: int) -> str:
    """12345 -> '12.3k'."""
    if n < 1000:
        return str(n)
    if n < 100_000:
        return f"{n / 1000:.1f}k"
    return f"{n // 1000}k"


class StatusBar(Widget):
    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        width: 100%;
        background: $panel;
        color: $text-muted;
        padding: 0 1;
    }
    """

    activity = reactive("idle")
    model = reactive("")
    backend = reactive("")
    context_used = reactive(0)
    context_limit = reactive(0)
    prefilled = reactive(0)
    reused = reactive(0)
    tokens_per_s = reactive(0.0)
    step = reactive(0)
    sandbox = reactive("off")

    def apply(self, usage: Usage) -> None:
        """Take the fields a usage report carries; leave the others."""
        for name in ("context_used", "context_limit", "prefilled", "reused", "tokens_per_s", "step"):
            value = getattr(usage, name)
            if value is not None:
                setattr(self, name, value)

    def parts(self, level: int) -> list[tuple[str, str]]:
        """(text, style) pieces; level 0 is the full form, 1 and 2 are shorter for narrow terminals."""
        busy = self.activity != "idle"
        pieces = [(("● " if busy else "○ ") + self.activity, "bold $accent" if busy else "")]
        ctx = f"{human(self.context_used)}/{human(self.context_limit)}" if self.context_limit else "-"
        model = f"{self.backend}:{self.model}" if self.model else self.backend
        sandbox_style = "$error" if self.sandbox.startswith("error") else ""
        if level == 0:
            return pieces + [
                (model, ""),
                (f"ctx {ctx}", ""),
                (f"prefill {human(self.prefilled)} · reused {human(self.reused)}", ""),
                (f"{self.tokens_per_s:.1f} tok/s", ""),
                (f"step {self.step}", ""),
                (f"sandbox {self.sandbox}", sandbox_style),
            ]
        return pieces + [
            (model if level == 1 else self.backend, ""),
            (ctx, ""),
            (f"+{human(self.prefilled)} ♻{human(self.reused)}", ""),
            (f"{self.tokens_per_s:.0f}t/s", ""),
            (f"#{self.step}", ""),
            (f"sbx {self.sandbox}", sandbox_style),
        ]

    def render(self) -> Text:
        width = self.content_size.width or 80
        for level in (0, 1):
            text = self._join(self.parts(level))
            if text.cell_len <= width:
                return text
        pieces = self.parts(2)
        while len(pieces) > 1:  # drop whole facts from the least important end rather than cut one in half
            text = self._join(pieces)
            if text.cell_len <= width:
                return text
            pieces.pop()
        text = self._join(pieces)
        text.truncate(width, overflow="ellipsis")
        return text

    def _join(self, parts: list[tuple[str, str]]) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for index, (piece, style) in enumerate(parts):
            if index:
                text.append(" │ ", style="dim")
            text.append(piece, style=self._style(style))
        return text

    def _style(self, style: str) -> str:
        # Theme variables resolve to colours of the current theme, light or dark.
        if not style:
            return ""
        variables = self.app.theme_variables
        return " ".join(variables.get(word[1:], word) if word.startswith("$") else word for word in style.split())


if __name__ == "__main__":
    from textual.app import App, ComposeResult
    from textual.widgets import Footer

    class StatusDemo(App):
        def compose(self) -> ComposeResult:
            bar = StatusBar()
            bar.set_reactive(StatusBar.model, "DeepSeek-V3.2")
            bar.set_reactive(StatusBar.backend, "local")
            yield bar
            yield Footer()

        def on_mount(self) -> None:
            bar = self.query_one(StatusBar)
            bar.activity = "thinking"
            bar.apply(Usage(12345, 65536, 512, 11833, 23.4, 3))
            bar.sandbox = "ready"

    StatusDemo().run()
