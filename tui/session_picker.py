"""Pick a saved session to resume: newest first; Enter resumes, Esc goes back."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


@dataclass
class SessionEntry:
    id: str
    title: str  # the first prompt, usually
    when: str  # already formatted for display
    detail: str = ""  # e.g. "12 messages"


class SessionPicker(ModalScreen[str | None]):
    DEFAULT_CSS = """
    SessionPicker { align: center middle; }
    SessionPicker > #box {
        width: 90%;
        max-width: 100;
        height: auto;
        max-height: 80%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    SessionPicker #heading { text-style: bold; margin-bottom: 1; }
    SessionPicker OptionList { height: auto; max-height: 18; }
    """

    BINDINGS = [Binding("escape", "dismiss_none", "Back")]

    def __init__(self, sessions: list[SessionEntry]) -> None:
        super().__init__()
        self.sessions = sessions

    def compose(self) -> ComposeResult:
        with Vertical(id="box"):
            if self.sessions:
                yield Label("Resume a session (Enter picks, Esc goes back)", id="heading")
                yield OptionList(*(self._option(entry) for entry in self.sessions))
            else:
                yield Label("No saved sessions in this repository yet (Esc goes back).", id="heading")

    @staticmethod
    def _option(entry: SessionEntry) -> Option:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(entry.when, style="dim")
        line.append("  ")
        line.append(entry.title or "(no prompt)")
        if entry.detail:
            line.append(f"  {entry.detail}", style="dim")
        return Option(line, id=entry.id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


if __name__ == "__main__":
    from textual.app import App

    class PickerDemo(App):
        def on_mount(self) -> None:
            entries = [
                SessionEntry("s2", "Fix the failing test in tests/test_calc.py", "2025-01-02 10:00", "8 messages"),
                SessionEntry("s1", "Explain the repository layout", "2025-01-01 09:30", "3 messages"),
            ]
            self.push_screen(SessionPicker(entries), self.exit)

    print(PickerDemo().run())
