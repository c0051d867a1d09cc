"""A line from the app itself in the conversation: command results, turn endings, errors."""

from __future__ import annotations

from textual.widgets import Static


class NoticeLine(Static):
    DEFAULT_CSS = """
    NoticeLine {
        height: auto;
        margin: 0 0 1 0;
        padding: 0 1;
        color: $text-muted;
    }
    NoticeLine.-error {
        color: $text-error;
        background: $error-muted;
        border-left: thick $error;
    }
    """

    def __init__(self, text: str, error: bool = False, **kwargs) -> None:
        super().__init__(text, markup=False, **kwargs)
        self.text = text
        self.set_class(error, "-error")


if __name__ == "__main__":
    from textual.app import App, ComposeResult

    class NoticeDemo(App):
        def compose(self) -> ComposeResult:
            yield NoticeLine("applied 1 file to the working tree")
            yield NoticeLine("the model server did not answer: start it or pick another with /model", error=True)

    NoticeDemo().run()
