"""The TUI with the real Docker sandbox: `/tests` draws a pass/fail table, a long command can be
cancelled with Esc, and keys stay live while it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from dsagent.tui.app import DsagentApp
from dsagent.tui.notice import NoticeLine
from dsagent.tui.test_table import TestTable
from dsagent.tui.tool_card import ToolCard
from tui_kit import BUDGET, call, fix_script, key_latency, settings_for, step, type_and_send, wait_until, write_script

pytestmark = [pytest.mark.anyio, pytest.mark.docker, pytest.mark.slow]


def last_card(app: DsagentApp) -> ToolCard | None:
    cards = list(app.query(ToolCard))
    return cards[-1] if cards else None


async def test_tests_command_shows_a_table_before_and_after_a_fix(project: Path, tmp_path: Path) -> None:
    script = write_script(tmp_path / "fix.jsonl", fix_script())
    app = DsagentApp(settings_for(script, approval="auto"), project, sandbox=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_and_send(pilot, "/tests test_calc.py")
        await wait_until(
            pilot,
            lambda: not app.busy and last_card(app) and last_card(app).status != "running",
            timeout=120,
            what="first test run",
        )
        assert app.status_bar.sandbox == "ready"
        before = last_card(app)
        assert before.status == "failed" and before.summary == "test_calc.py"
        rows = before.query_one(TestTable).outcomes
        assert [(r.name, r.outcome) for r in rows] == [("test_calc.py::test_add", "failed")]

        await type_and_send(pilot, "fix add")
        await wait_until(pilot, lambda: not app.busy and last_card(app).tool_name == "finish", timeout=60)
        await type_and_send(pilot, "/tests")
        await wait_until(
            pilot, lambda: last_card(app).tool_name == "run_tests" and last_card(app).status != "running", timeout=120
        )
        after = last_card(app)
        assert after.status == "ok"
        assert [r.outcome for r in after.query_one(TestTable).outcomes] == ["passed"]


async def test_escape_cancels_a_long_command_and_keys_stay_live(project: Path, tmp_path: Path) -> None:
    sleep = call("run_shell", "s1", command="sleep 60")
    script = write_script(tmp_path / "sleep.jsonl", [step("wait a while", sleep)])
    app = DsagentApp(settings_for(script, approval="auto"), project, sandbox=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_and_send(pilot, "sleep")
        await wait_until(pilot, lambda: app.status_bar.activity == "running run_shell", timeout=120)
        latencies = [await key_latency(app) for _ in range(20)]
        assert max(app_latency for app_latency, _wall in latencies) < BUDGET, latencies
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.busy, timeout=20, what="cancel")
        card = last_card(app)
        assert card.status == "failed"
        assert "cancelled" in [line.text for line in app.query(NoticeLine)]


async def test_a_running_command_shows_its_output_as_it_prints(project: Path, tmp_path: Path) -> None:
    slow = call("run_shell", "s1", command="echo first; sleep 4; echo second")
    script = write_script(tmp_path / "slow.jsonl", [step("run it", slow), step("", content="ran")])
    app = DsagentApp(settings_for(script, approval="auto"), project, sandbox=True)
    async with app.run_test(size=(80, 30)) as pilot:
        await type_and_send(pilot, "run")
        card = await wait_until(pilot, lambda: last_card(app), timeout=120, what="the command's card")
        shown = lambda: str(card.query(".output").first().render()) if card.query(".output") else ""  # noqa: E731
        await wait_until(pilot, lambda: "first" in shown(), timeout=30, what="live output")
        assert card.status == "running" and not card.collapsed and "second" not in shown()
        await wait_until(pilot, lambda: card.status == "ok", timeout=30, what="the command's end")
        assert card.collapsed  # the result folds like any other output
