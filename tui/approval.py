"""The approval modal for the `ask` policy: the exact command or diff, then allow once, allow for
this session, or deny with an optional note that goes back to the model."""

from __future__ import annotations

import json

from dsagent.tui.diff_view import DiffView, highlight
from dsagent.tui.messages import ApprovalDecision, ApprovalRequest
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ApprovalScreen(ModalScreen[ApprovalDecision]):
    DEFAULT_CSS = """
    ApprovalScreen {
        align: center middle;
    }
    ApprovalScreen > #dialog {
        width: 90%;
        max-width: 110;
        height: auto;
        max-height: 90%;
        padding: 0 1;
        border: thick $warning;
        background: $surface;
    }
    ApprovalScreen #question { text-style: bold; width: 100%; }
    ApprovalScreen #reason { color: $text-muted; }
    ApprovalScreen #detail {
        height: auto;
        max-height: 40vh;
        margin: 1 0 0 0;
        background: $panel;
    }
    ApprovalScreen #command { padding: 0 1; }
    ApprovalScreen #note { margin: 0; }
    ApprovalScreen #buttons { height: auto; width: 100%; }
    ApprovalScreen Button { margin-right: 1; min-width: 10; }
    """

    BINDINGS = [
        Binding("y", "decide('once')", "Allow once", show=True),
        Binding("a", "decide('session')", "Allow for session", show=True),
        Binding("n", "decide('deny')", "Deny", show=True),
        Binding("escape", "decide('deny')", "Deny", show=False),
    ]

    def __init__(self, request: ApprovalRequest) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        req = self.request
        with Vertical(id="dialog"):
            yield Label(f"Allow {escape(req.tool)}?", id="question")
            if req.reason:
                yield Label(req.reason, id="reason", markup=False)
            with VerticalScroll(id="detail"):
                if req.diff is not None:
                    yield DiffView(req.diff)
                elif req.command is not None:
                    yield Static(highlight(req.command, "bash", self.app.current_theme.dark), id="command")
                else:
                    yield Static(json.dumps(req.arguments, indent=2, ensure_ascii=False), markup=False)
            yield Input(placeholder="note for the model (optional, sent with a denial)", id="note")
            with Horizontal(id="buttons"):
                yield Button("Allow once (y)", variant="success", id="once")
                yield Button("Allow for session (a)", variant="primary", id="session")
                yield Button("Deny (n)", variant="error", id="deny")

    def on_mount(self) -> None:
        self.query_one("#once", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_decide(event.button.id or "deny")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        # Enter in the note field means: deny, with this note.
        event.stop()
        self.action_decide("deny")

    def action_decide(self, choice: str) -> None:
        note = self.query_one("#note", Input).value.strip()
        self.dismiss(ApprovalDecision(choice, note if choice == "deny" else ""))  # type: ignore[arg-type]


if __name__ == "__main__":
    from textual.app import App

    class ApprovalDemo(App):
        def on_mount(self) -> None:
            request = ApprovalRequest(
                "run_shell",
                {"command": "rm -rf build && make"},
                command="rm -rf build && make",
                reason="runs a command",
            )
            self.push_screen(ApprovalScreen(request), lambda decision: self.exit(decision))

    print(ApprovalDemo().run())
