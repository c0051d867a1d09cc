"""The pieces on their own: argument summaries, diff rendering, the status line at narrow widths, the
proposed diff shown for approval, and the event adapter (live and replayed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dsagent.agent import events as ev
from dsagent.tui import messages as ui
from dsagent.tui.adapter import EventAdapter
from dsagent.tui.approval_diff import proposed_diff
from dsagent.tui.diff_view import DiffView, render_diff
from dsagent.tui.status_bar import StatusBar, human
from dsagent.tui.test_table import TestOutcome, render_tests, summary_line
from dsagent.tui.tool_card import ToolCard, clip_output, format_duration, summarize_args
from rich.console import Console
from textual.app import App, ComposeResult
from tui_kit import screen_text

DIFF = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"


def test_argument_summaries_name_what_a_call_does() -> None:
    assert summarize_args("read_file", {"path": "a.py", "start_line": 3, "end_line": 9}) == "a.py:3-9"
    assert summarize_args("edit_file", {"path": "src/x.py", "old_string": "a" * 500}) == "src/x.py"
    assert summarize_args("search_code", {"query": "Foo", "kind": "reference"}) == "'Foo' (reference)"
    assert summarize_args("run_tests", {}) == "all tests"
    long = summarize_args("run_shell", {"command": "echo " + "x" * 200})
    assert len(long) == 48 and long.endswith("…")
    assert summarize_args("mystery", {"b": 1, "a": 2}) == '{"a": 2, "b": 1}'


def test_durations_and_clipped_output() -> None:
    assert [format_duration(s) for s in (0.04, 12.4, 125)] == ["0.0s", "12s", "2m05s"]
    text = "\n".join(f"line {i}" for i in range(500))
    clipped = clip_output(text, lines=30)
    assert "line 0" in clipped and "line 499" in clipped and "470 lines not shown" in clipped
    assert clip_output("") == "(no output)"


@pytest.mark.parametrize("dark", [True, False])
def test_diff_lines_are_tinted_and_code_highlighted(dark: bool) -> None:
    text = render_diff("diff --git a/calc.py b/calc.py\nindex 1234..5678 100644\n" + DIFF, dark=dark)
    assert "index 1234" not in text.plain  # blob ids are noise
    lines = text.plain.splitlines()
    removed = lines.index("-     return a - b")
    added = lines.index("+     return a + b")
    start = sum(len(line) + 1 for line in lines[:added])
    styles = [span.style for span in text.spans if span.start <= start + 4 < span.end]
    assert any("on #" in str(style) for style in styles)  # the + line is tinted
    keyword = start + lines[added].index("return")
    assert any(
        getattr(s, "color", None) for s in (span.style for span in text.spans if span.start <= keyword < span.end)
    )
    assert removed < added


def test_tests_table_counts_and_lists_failures() -> None:
    outcomes = [TestOutcome("t::a", "passed"), TestOutcome("t::b", "failed", "assert 1 == 2")]
    assert summary_line(outcomes).plain == "1 passed, 1 failed"
    console = Console(width=60, record=True, file=None)
    console.print(render_tests(outcomes))
    shown = console.export_text()
    assert "t::b" in shown and "assert 1 == 2" in shown


def test_human_numbers() -> None:
    assert [human(n) for n in (999, 12345, 131072)] == ["999", "12.3k", "131k"]


class Bar(App):
    def compose(self) -> ComposeResult:
        yield StatusBar()


@pytest.mark.anyio
@pytest.mark.parametrize("width", [140, 80, 60])
async def test_status_line_fits_the_terminal_with_its_key_facts(width: int) -> None:
    app = Bar()
    async with app.run_test(size=(width, 3)) as pilot:
        bar = app.query_one(StatusBar)
        bar.backend, bar.model, bar.sandbox, bar.activity = "local", "DeepSeek-V3.2", "ready", "running run_tests"
        bar.apply(
            ui.Usage(context_used=40960, context_limit=131072, prefilled=812, reused=40100, tokens_per_s=23.4, step=7)
        )
        await pilot.pause()
        line = bar.render().plain
        assert len(line) <= width - 2
        for fact in ("running run_tests", "41.0k/131k", "812", "40.1k"):
            assert fact in line, (fact, line)
        if width >= 80:
            assert "23" in line and ("#7" in line or "step 7" in line)
        if width >= 140:
            assert "local:DeepSeek-V3.2" in line and "sandbox ready" in line


class Cards(App):
    def compose(self) -> ComposeResult:
        yield ToolCard("1", "edit_file", {"path": "calc.py"})
        yield ToolCard("2", "run_shell", {"command": "sleep 999"})


@pytest.mark.anyio
async def test_tool_cards_show_status_and_the_right_body() -> None:
    app = Cards()
    async with app.run_test(size=(80, 24)) as pilot:
        edit, shell = app.query(ToolCard)
        assert edit.title.endswith("· running") and edit.has_class("-running")
        await edit.finish(True, "Edited calc.py", 0.02, data={"diff": DIFF})
        await shell.finish(False, "killed after 300s", 300.0, timed_out=True)
        await pilot.pause()
        assert edit.title == "✔ edit_file  calc.py  · ok 0.0s" and not edit.collapsed
        assert edit.query_one(DiffView).diff == DIFF
        assert shell.title == "⧗ run_shell  sleep 999  · timed out 5m00s" and shell.collapsed
        assert shell.has_class("-timed-out")


@pytest.mark.anyio
async def test_a_running_card_counts_its_time() -> None:
    app = Cards()
    async with app.run_test(size=(80, 24)) as pilot:
        edit, shell = app.query(ToolCard)
        shell.started -= 65  # as if the command had been running for 65 s
        shell.tick()
        assert shell.title == "◌ run_shell  sleep 999  · running 1m05s"
        await shell.finish(True, "done", 70.0)
        shell.tick()
        await pilot.pause()
        assert shell.title == "✔ run_shell  sleep 999  · ok 1m10s"


class Brackets(App):
    def compose(self) -> ComposeResult:
        yield ToolCard("1", "run_shell", {"command": "echo [/] && grep -n '[a-z]' x[0].py"})
        yield ToolCard("2", "search_code", {"query": "[bold]x", "kind": "text"})


@pytest.mark.anyio
async def test_tool_card_titles_show_brackets_as_written() -> None:
    # Titles are markup: a command or query with brackets once raised MarkupError and stopped the app.
    app = Brackets()
    async with app.run_test(size=(100, 12)) as pilot:
        await pilot.pause()
        shown = screen_text(app)
        assert "echo [/] && grep -n '[a-z]' x[0].py" in shown and "'[bold]x' (text)" in shown


class Diffs(App):
    def compose(self) -> ComposeResult:
        yield DiffView(DIFF)


@pytest.mark.anyio
async def test_diff_follows_the_theme() -> None:
    app = Diffs()
    async with app.run_test(size=(80, 10)) as pilot:
        view = app.query_one(DiffView)
        dark = str(view.render())
        app.theme = "textual-light"
        await pilot.pause()
        assert view.visual is not None and render_diff(DIFF, dark=False).spans != render_diff(DIFF, dark=True).spans
        assert str(view.render()) == dark  # same text, other colours
        assert not app.current_theme.dark


def test_proposed_diff_for_edits_and_writes(tmp_path: Path) -> None:
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    edit = proposed_diff(tmp_path, "edit_file", {"path": "calc.py", "old_string": "a - b", "new_string": "a + b"})
    assert "-    return a - b\n+    return a + b" in edit
    new = proposed_diff(tmp_path, "write_file", {"path": "new.py", "content": "x = 1\n"})
    assert "--- /dev/null" in new and "+x = 1" in new
    assert proposed_diff(tmp_path, "edit_file", {"path": "calc.py", "old_string": "nope", "new_string": "x"}) is None
    assert proposed_diff(tmp_path, "edit_file", {"path": "../outside.py", "old_string": "", "new_string": "x"}) is None
    assert proposed_diff(tmp_path, "run_shell", {"command": "ls"}) is None


def test_adapter_live_stream_and_replay() -> None:
    live = EventAdapter()
    out = []
    for event in (
        ev.StepStarted(step=1),
        ev.ReasoningDelta(step=1, text="hm"),
        ev.ContentDelta(step=1, text="hi"),
        ev.AssistantMessage(step=1, message={"role": "assistant", "content": "hi", "reasoning_content": "hm"}),
        ev.Usage(step=1, prompt_tokens=100, prefilled=10, reused=90, generated=5, tokens_per_s=12.5),
        ev.TurnFinished(turn=1, reason="answered", summary="hi", steps=1, generated_tokens=5, elapsed=0.1),
    ):
        out += live.convert(event)
    kinds = [type(m).__name__ for m in out]
    assert kinds == ["StepStarted", "ReasoningDelta", "AnswerDelta", "StepEnded", "UsageUpdated", "TurnEnded"]
    assert out[4].usage == ui.Usage(context_used=105, prefilled=10, reused=90, tokens_per_s=12.5, step=1)

    replay = EventAdapter()  # a saved session without deltas: the text comes from the finished message
    message = ev.AssistantMessage(step=1, message={"role": "assistant", "content": "hi", "reasoning_content": "hm"})
    replayed = replay.convert(message)
    assert [(type(m).__name__, getattr(m, "text", None)) for m in replayed] == [
        ("ReasoningDelta", "hm"),
        ("AnswerDelta", "hi"),
        ("StepEnded", None),
    ]
    cancelled = ev.ToolCallFinished(
        step=1, call_id="c", name="run_shell", ok=True, output="", started_at=0, duration=1.0, cancelled=True
    )
    (finished,) = replay.convert(cancelled)
    assert not finished.ok and finished.output == "cancelled"
