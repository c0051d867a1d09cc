"""A unified diff with the code highlighted in its own language and +/- lines tinted."""

from __future__ import annotations

from rich.style import Style
from rich.syntax import Syntax
from rich.text import Span, Text
from textual.widgets import Static

# Line tints that read on both a dark and a light background.
TINTS = {
    True: {"+": "on #16351f", "-": "on #3d1a1d", "@": "bold #5fafd7", "file": "bold"},
    False: {"+": "on #dcf5e0", "-": "on #fbe0e2", "@": "bold #005f87", "file": "bold"},
}
CODE_THEME = {True: "monokai", False: "friendly"}
MAX_HIGHLIGHTED_LINES = 3000  # beyond this, highlighting line by line costs more than it helps


def _lexer_for(path: str) -> str:
    return Syntax.guess_lexer(path, code="") if path else "text"


def render_diff(diff: str, dark: bool = True) -> Text:
    """Rich text for a unified diff (git or difflib style)."""
    tints = TINTS[dark]
    highlight = diff.count("\n") <= MAX_HIGHLIGHTED_LINES
    out = Text(no_wrap=False, end="")
    syntax = Syntax("", "text", theme=CODE_THEME[dark])
    for raw in diff.splitlines():
        if raw.startswith("index "):
            continue  # blob ids: noise to a reader
        if raw.startswith(("diff --git", "new file", "deleted file", "similarity", "rename ")):
            out.append(raw + "\n", style="dim")
            continue
        if raw.startswith(("--- ", "+++ ")):
            if raw.startswith("+++ "):
                path = raw[4:].strip().removeprefix("b/")
                syntax = Syntax("", _lexer_for("" if path == "/dev/null" else path), theme=CODE_THEME[dark])
            out.append(raw + "\n", style=tints["file"])
            continue
        if raw.startswith("@@"):
            out.append(raw + "\n", style=tints["@"])
            continue
        sign, code = (raw[:1], raw[1:]) if raw[:1] in "+- " else (" ", raw)
        line = Text()
        line.append(sign + " ", style="bold green" if sign == "+" else "bold red" if sign == "-" else "dim")
        line.append_text(_code(syntax, code) if highlight else Text(code))
        if sign in "+-":
            line.stylize(tints[sign])
        out.append_text(line)
        out.append("\n")
    out.rstrip()
    return out


def highlight(code: str, lexer: str, dark: bool = True) -> Text:
    """Code highlighted for the theme, on no background of its own (it sits on the widget's)."""
    return _code(Syntax("", lexer, theme=CODE_THEME[dark]), code)


def _code(syntax: Syntax, code: str) -> Text:
    """Highlighted code with the theme's background removed, so the line tint (or none) shows."""
    text = syntax.highlight(code)
    text.rstrip()
    text.style = ""
    text.spans = [Span(s.start, s.end, _without_background(s.style)) for s in text.spans]
    return text


def _without_background(style: str | Style) -> Style:
    style = Style.parse(style) if isinstance(style, str) else style
    return Style(color=style.color, bold=style.bold, italic=style.italic, underline=style.underline)


class DiffView(Static):
    """Shows a diff; re-renders when the theme switches between dark and light."""

    DEFAULT_CSS = """
    DiffView {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, diff: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.diff = diff

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._refresh_diff, init=True)

    def _refresh_diff(self, _theme: str | None = None) -> None:
        self.update(render_diff(self.diff, dark=self.app.current_theme.dark) if self.diff else "(no changes)")

    def set_diff(self, diff: str) -> None:
        self.diff = diff
        self._refresh_diff()


if __name__ == "__main__":
    from textual.app import App, ComposeResult
    from textual.containers import VerticalScroll

    SAMPLE = """\
diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -1,4 +1,4 @@
 def add(a: int, b: int) -> int:
-    return a - b
+    return a + b
 \n"""

    class DiffDemo(App):
        BINDINGS = [("t", "toggle_theme", "Toggle theme")]

        def compose(self) -> ComposeResult:
            with VerticalScroll():
                yield DiffView(SAMPLE)

        def action_toggle_theme(self) -> None:
            self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    DiffDemo().run()
