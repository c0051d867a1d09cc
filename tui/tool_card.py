"""One tool call: a title line (status, name, argument summary, duration, counted while it runs) over
its expandable output. Edits show their diff, test runs a pass/fail table, everything else the text the model saw."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from dsagent.agent.render import LIVE_TOOLS, tail_lines
from dsagent.tui.diff_view import DiffView
from dsagent.tui.test_table import TestOutcome, TestTable
from rich.text import Text
from textual.markup import escape
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Collapsible, Static

STATUS = {
    "running": ("◌", "running"),
    "ok": ("✔", "ok"),
    "failed": ("✘", "failed"),
    "timed out": ("⧗", "timed out"),
}
SUMMARY_WIDTH = 48
LIVE_LINES = 8  # lines of a running command's latest output shown in its card
OUTPUT_LINES = 60  # lines of plain output shown in a card; the model got the full text


def shorten(text: str, width: int = SUMMARY_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def summarize_args(name: str, args: dict[str, Any]) -> str:
    """The few words that say what a call does: a path, a query, a command."""
    path = str(args.get("path", "") or "")
    if name == "read_file":
        start, end = args.get("start_line"), args.get("end_line")
        span = f":{start or 1}-{end}" if end else (f":{start}-" if start else "")
        return shorten(path + span)
    if name in ("edit_file", "write_file", "list_dir"):
        return shorten(path or ".")
    if name == "search_code":
        where = f" in {path}" if path else ""
        return shorten(f"{args.get('query', '')!r} ({args.get('kind', 'definition')}){where}")
    if name == "repo_map":
        return shorten(str(args.get("focus") or "whole repository"))
    if name == "run_tests":
        return shorten(str(args.get("target") or "all tests"))
    if name == "run_shell":
        return shorten(str(args.get("command", "")))
    if name == "finish":
        return shorten(str(args.get("summary", "")))
    return shorten(json.dumps(args, ensure_ascii=False, sort_keys=True))


def format_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


def outcomes_from_data(data: dict[str, Any]) -> tuple[list[TestOutcome], dict[str, int] | None] | None:
    """The rows of a test run from a tool result's data, or None when it is not one."""
    rows = data.get("tests")
    if not isinstance(rows, list):
        return None
    outcomes = [
        TestOutcome(str(row.get("name", "?")), str(row.get("outcome", "?")), str(row.get("message", "") or ""))
        for row in rows
        if isinstance(row, dict)
    ]
    counts = data.get("counts")
    return outcomes, counts if isinstance(counts, dict) else None


def clip_output(text: str, lines: int = OUTPUT_LINES) -> str:
    kept = text.splitlines()
    if len(kept) <= lines:
        return text.rstrip() or "(no output)"
    head = lines // 3
    tail = lines - head
    return "\n".join([*kept[:head], f"… {len(kept) - lines} lines not shown …", *kept[-tail:]])


class ToolCard(Collapsible):
    DEFAULT_CSS = """
    ToolCard {
        border: none;
        border-left: thick $primary 50%;
        padding: 0;
        margin: 0 0 1 0;
        background: $boost;
    }
    ToolCard.-ok { border-left: thick $success; }
    ToolCard.-failed, ToolCard.-timed-out { border-left: thick $error; }
    ToolCard > Contents { padding: 0 0 0 1; }
    ToolCard .output { color: $text-muted; }
    ToolCard Collapsible { border: none; padding: 0; margin: 0; background: transparent; }
    """

    def __init__(
        self, call_id: str, name: str, arguments: dict[str, Any], live: Callable[[], str] | None = None, **kwargs
    ) -> None:
        """`live`: what the call has printed so far, for commands (run_shell, run_tests) while they run."""
        self.call_id = call_id
        self.live = live if name in LIVE_TOOLS else None
        self.tool_name = name
        self.arguments = arguments
        self.summary = summarize_args(name, arguments)
        self.status = "running"
        self.duration: float | None = None
        self.started = time.monotonic()
        self._ticker: Timer | None = None
        self._opened = False
        super().__init__(Static("running…", classes="output"), title=self._heading(), collapsed=True, **kwargs)
        self.add_class("-running")

    def on_mount(self) -> None:
        if self.status == "running":
            self._ticker = self.set_interval(1.0, self.tick)

    def tick(self) -> None:
        """While the call runs the title counts its time and a command shows its latest output, so a long
        test run visibly lives."""
        if self.status != "running":
            return
        self.title = self._heading()
        printed = self.live() if self.live is not None else ""
        body = self.query(".output")  # not there for an instant while the card mounts
        if printed.strip() and body:
            body.first(Static).update(Text(tail_lines(printed, LIVE_LINES)))
            if not self._opened:  # open it once; a user who folds it again keeps it folded
                self._opened, self.collapsed = True, False

    def _heading(self) -> str:
        icon, label = STATUS[self.status]
        elapsed = self.duration
        if elapsed is None and self.status == "running" and time.monotonic() - self.started >= 1:
            elapsed = time.monotonic() - self.started
        duration = f" {format_duration(elapsed)}" if elapsed is not None else ""
        # the title is markup: a path, query or command ("echo [/]", "x[0]") must stay text
        return f"{icon} {escape(self.tool_name)}  {escape(self.summary)}  · {label}{duration}"

    async def finish(
        self, ok: bool, output: str, duration: float, timed_out: bool = False, data: dict[str, Any] | None = None
    ) -> None:
        """Show the result: the body by what kind of result it is, then the status in the title."""
        if self._ticker is not None:  # before the awaits below, so no tick runs between them
            self._ticker.stop()
        data = data or {}
        diff = data.get("diff") if isinstance(data.get("diff"), str) and data["diff"].strip() else None
        contents = self.query_one(Collapsible.Contents)
        await contents.remove_children()
        await contents.mount_all(self._body(ok, output, diff, outcomes_from_data(data)))
        self.status = "timed out" if timed_out else "ok" if ok else "failed"
        self.duration = duration
        if self.live is not None:
            self.collapsed = True  # the live view is over: the result is folded like any other output
        self.remove_class("-running")
        self.add_class("-" + self.status.replace(" ", "-"))
        self.title = self._heading()
        # A change is what the user most wants to see; other output stays folded until asked for.
        if diff and ok:
            self.collapsed = False

    @staticmethod
    def _body(ok: bool, output: str, diff: str | None, tests: Any) -> list[Widget]:
        text = Static(clip_output(output), classes="output", markup=False)
        if diff:
            return [DiffView(diff), text] if not ok else [DiffView(diff)]
        if tests is not None:
            return [TestTable(*tests), Collapsible(text, title="output")]
        return [text]


if __name__ == "__main__":
    from textual.app import App, ComposeResult
    from textual.containers import VerticalScroll

    DIFF = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"

    class ToolCardDemo(App):
        def compose(self) -> ComposeResult:
            with VerticalScroll():
                yield ToolCard("1", "read_file", {"path": "calc.py"})
                yield ToolCard("2", "edit_file", {"path": "calc.py", "old_string": "-", "new_string": "+"})
                yield ToolCard("3", "run_tests", {"target": "tests/test_calc.py"})
                yield ToolCard("4", "run_shell", {"command": "sleep 999"})

        async def on_mount(self) -> None:
            cards = list(self.query(ToolCard))
            await cards[0].finish(True, "def add(a, b):\n    return a - b\n", 0.01)
            await cards[1].finish(True, "edited calc.py", 0.02, data={"diff": DIFF})
            tests = [{"name": "tests/test_calc.py::test_add", "outcome": "passed"}]
            await cards[2].finish(True, "1 passed", 1.5, data={"tests": tests})
            await cards[3].finish(False, "killed after 300s", 300.0, timed_out=True)

    ToolCardDemo().run()
