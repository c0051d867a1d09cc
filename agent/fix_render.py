"""How a fix reads on a terminal: the reproduced failure, the agent's steps (agent/render.py), the
verification table, the patch and the outcome. Headless runs use the compact form on stderr."""

from __future__ import annotations

from typing import Any

from dsagent.agent.render import print_patch
from dsagent.words import counted
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

FAILURE_PREVIEW_LINES = 40
STATUS_STYLE = {
    "fixed": "green",
    "passes": "green",
    "ok": "green",
    "now passes": "green",
    "new": "cyan",
    "collects now": "green",
    "still failing": "red",
    "regressed": "bold red",
    "removed": "bold red",
}


class FixPrinter:
    """Renders the fix events; `compact` keeps to one line each (progress for headless runs)."""

    def __init__(self, console: Console, compact: bool = False, errors: Console | None = None) -> None:
        self.console = console
        self.compact = compact
        self.errors = errors or console
        """Where a run that could not start (exit 2 or 3) says why, in one line."""

    def __call__(self, event: Any) -> None:
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)

    def _print(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def _on_fix_started(self, event: Any) -> None:
        extra = ", test edits allowed" if event.allow_test_edits else ""
        self._print(
            f"[bold]dsagent fix[/] {escape(event.target)} [dim]in {escape(event.repo)} "
            f"(verify: {event.scope}{extra})[/]"
        )
        self._print("[dim]starting the workspace and the sandbox; running the target as it is…[/]")

    def _on_fix_reproduced(self, event: Any) -> None:
        if event.status == "no_match":
            return  # fix_finished says it in one line
        if event.status == "passing":
            self._print(f"[green]✓ the target passes already[/] ({len(event.tests)} test(s))")
            return
        bad = [t for t in event.tests if t.outcome != "passed"]
        self._print(
            f"[red]✗ reproduced:[/] {len(bad)} of {len(event.tests)} target test(s) fail "
            f"[dim]({event.neighbours} neighbour(s) recorded as the baseline)[/]"
        )
        if self.compact:
            for test in bad:
                reason = test.message.split("\n")[0][:120]
                self._print(f"  [red]{test.outcome}[/] {escape(test.test)} [dim]{escape(reason)}[/]")
            return
        lines = event.failure.splitlines()
        shown = "\n".join(lines[:FAILURE_PREVIEW_LINES])
        if len(lines) > FAILURE_PREVIEW_LINES:
            shown += f"\n… {len(lines) - FAILURE_PREVIEW_LINES} more lines (the model sees them all)"
        self.console.print(Panel(escape(shown), title="the failure", border_style="red", expand=False))

    def _on_fix_verified(self, event: Any) -> None:
        if self.compact:
            state = "target passes" if event.target_passes else "target still fails"
            self._print(
                f"verification: {state}, {len(event.regressions)} regression(s), {len(event.rows)} test(s) compared"
            )
        else:
            self.console.print(verification_table(event.rows))
        for problem in event.contract:
            self._print(f"[bold red]contract:[/] {escape(problem)}")

    def _on_patch(self, event: Any) -> None:
        where = f" → {escape(event.path)}" if event.path else ""
        if self.compact or not event.diff.strip():
            what = f"{counted(len(event.files), 'file')} changed" if event.diff.strip() else "no changes"
            self._print(f"patch: {what}{where}")
            return
        print_patch(self.console, event.diff)
        if event.path:
            self._print(f"[dim]patch written to {escape(event.path)}[/]")

    def _on_fix_finished(self, event: Any) -> None:
        if event.summary and not self.compact:
            self.console.print(Panel(escape(event.summary), title="cause and fix", border_style="green", expand=False))
        if event.exit_code in (2, 3):
            self.errors.print(f"[bold red]error:[/] {escape(event.message)}", highlight=False, soft_wrap=True)
            return
        style = "green" if event.exit_code == 0 else "yellow"
        label, message = event.outcome.replace("_", " "), escape(event.message)
        if message.startswith((label + " ", label + ":")):  # "fixed tests/x.py::t; ...": the label is its start
            self._print(f"[bold {style}]{label}[/]{message[len(label) :]}")
        else:
            self._print(f"[bold {style}]{label}[/]: {message}")
        if event.session_id and event.exit_code in (1, 4):
            self._print(f'[dim]continue it with `dsagent resume {event.session_id} "message"`[/]')


def verification_table(rows: list[Any]) -> Table:
    table = Table(title="verification", title_justify="left")
    for column in ("test", "before", "after", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        style = STATUS_STYLE.get(row.status, "yellow" if row.status.startswith("still") else "")
        name = f"[bold]{escape(row.test)}[/]" if row.target else escape(row.test)
        table.add_row(name, row.before, row.after, f"[{style}]{row.status}[/]" if style else row.status)
    return table
