"""A test run as a table: one row per test that did not pass (and the passes, when there are few),
with a one-line summary on top."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

OUTCOME_STYLE = {
    "passed": "green",
    "failed": "bold red",
    "error": "bold red",
    "skipped": "yellow",
    "xfailed": "yellow",
    "xpassed": "yellow",
    "timeout": "bold red",
    "flaky": "yellow",
}
MAX_ROWS = 30  # beyond this the table lists failures only


@dataclass
class TestOutcome:
    __test__ = False  # not a pytest test class

    name: str
    outcome: str  # passed | failed | error | skipped | xfailed | xpassed
    message: str = ""  # first line of the failure, when there is one


def summary_line(outcomes: list[TestOutcome], counts: dict[str, int] | None = None) -> Text:
    """'3 passed, 1 failed' from the counts if given, else from the rows."""
    if counts is None:
        counts = {}
        for item in outcomes:
            counts[item.outcome] = counts.get(item.outcome, 0) + 1
    text = Text()
    for outcome, number in counts.items():
        if not number:
            continue
        if text:
            text.append(", ")
        text.append(f"{number} {outcome}", style=OUTCOME_STYLE.get(outcome, ""))
    return text or Text("no tests ran", style="yellow")


def render_tests(outcomes: list[TestOutcome], counts: dict[str, int] | None = None) -> Group:
    rows = outcomes if len(outcomes) <= MAX_ROWS else [o for o in outcomes if o.outcome != "passed"][:MAX_ROWS]
    table = Table(show_header=True, header_style="bold", box=None, expand=True, pad_edge=False)
    table.add_column("result", no_wrap=True, width=8)
    table.add_column("test", ratio=1, overflow="fold")
    for item in rows:
        name = Text(item.name)
        if item.message:
            name.append("\n" + item.message, style="dim")
        table.add_row(Text(item.outcome, style=OUTCOME_STYLE.get(item.outcome, "")), name)
    hidden = len(outcomes) - len(rows)
    parts: list = [summary_line(outcomes, counts)]
    if rows:
        parts.append(table)
    if hidden > 0:
        parts.append(Text(f"… {hidden} more not shown", style="dim"))
    return Group(*parts)


class TestTable(Static):
    __test__ = False  # not a pytest test class

    DEFAULT_CSS = """
    TestTable {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, outcomes: list[TestOutcome], counts: dict[str, int] | None = None, **kwargs) -> None:
        super().__init__(render_tests(outcomes, counts), **kwargs)
        self.outcomes = outcomes


if __name__ == "__main__":
    from textual.app import App, ComposeResult

    class TestTableDemo(App):
        def compose(self) -> ComposeResult:
            yield TestTable(
                [
                    TestOutcome("tests/test_calc.py::test_add", "failed", "assert -1 == 5"),
                    TestOutcome("tests/test_calc.py::test_sub", "passed"),
                    TestOutcome("tests/test_calc.py::test_div", "skipped"),
                ]
            )

    TestTableDemo().run()
