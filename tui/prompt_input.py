"""The prompt: a multi-line text area where Enter sends and Up/Down walk the history."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.message import Message
from textual.widgets import TextArea


class PromptInput(TextArea):
    """Enter submits; Shift+Enter, Alt+Enter or Ctrl+J start a new line (terminals differ in which
    of these they can send). Up on the first line and Down on the last line recall earlier prompts."""

    DEFAULT_CSS = """
    PromptInput {
        height: auto;
        min-height: 2;
        max-height: 10;
    }
    """

    NEWLINE_KEYS = frozenset({"shift+enter", "alt+enter", "ctrl+j"})

    @dataclass
    class Submitted(Message):
        prompt: PromptInput
        text: str

    def __init__(self, history: list[str] | None = None, **kwargs) -> None:
        kwargs.setdefault("soft_wrap", True)
        kwargs.setdefault("show_line_numbers", False)
        kwargs.setdefault("compact", True)
        super().__init__(**kwargs)
        self.prompts: list[str] = list(history or [])
        self._history_index = len(self.prompts)  # == len(history): editing a fresh prompt
        self._draft = ""  # what was typed before walking into the history

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
            return
        if event.key in self.NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        if event.key == "up" and self.cursor_location[0] == 0 and self.recall(-1):
            event.stop()
            event.prevent_default()
            return
        if event.key == "down" and self.cursor_location[0] == self.document.line_count - 1 and self.recall(+1):
            event.stop()
            event.prevent_default()
            return
        await super()._on_key(event)

    def submit(self) -> None:
        text = self.text.strip()
        if not text:
            return
        if not self.prompts or self.prompts[-1] != text:
            self.prompts.append(text)
        self._history_index = len(self.prompts)
        self._draft = ""
        self.clear()
        self.post_message(self.Submitted(self, text))

    def recall(self, direction: int) -> bool:
        """Move through the history; False when there is nowhere to go (the key then moves the cursor)."""
        target = self._history_index + direction
        if target < 0 or target > len(self.prompts):
            return False
        if self._history_index == len(self.prompts):
            self._draft = self.text
        self._history_index = target
        self.text = self._draft if target == len(self.prompts) else self.prompts[target]
        last_row = self.document.line_count - 1
        self.move_cursor((last_row, len(self.document.get_line(last_row))))
        return True


if __name__ == "__main__":
    from textual.app import App, ComposeResult
    from textual.widgets import Log

    class PromptDemo(App):
        def compose(self) -> ComposeResult:
            yield Log()
            yield PromptInput(history=["explain the failing test", "run the tests"])

        def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
            self.query_one(Log).write_line(f"submitted: {message.text!r}")

    PromptDemo().run()
