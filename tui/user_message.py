"""The user's prompt as it appears in the conversation."""

from __future__ import annotations

from textual.widgets import Static


class UserMessage(Static):
    DEFAULT_CSS = """
    UserMessage {
        height: auto;
        margin: 1 0 1 0;
        padding: 0 1;
        border-left: thick $accent;
        background: $boost;
        text-style: bold;
    }
    """

    def __init__(self, text: str, **kwargs) -> None:
        super().__init__(text, markup=False, **kwargs)
        self.text = text


if __name__ == "__main__":
    from textual.app import App, ComposeResult

    class UserMessageDemo(App):
        def compose(self) -> ComposeResult:
            yield UserMessage("Fix the failing test in tests/test_calc.py\nand explain the cause.")

    UserMessageDemo().run()
