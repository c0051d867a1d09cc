"""The whole pairing flow through the real agent, workspace and tools, with the scripted backend as the
model: type a task, watch reasoning stream, tool cards complete, answer approvals, see the diff, apply."""

from __future__ import annotations

from pathlib import Path

import pytest
from dsagent.agent.session import find_session, load_session
from dsagent.tui.answer import Answer
from dsagent.tui.app import DsagentApp
from dsagent.tui.approval import ApprovalScreen
from dsagent.tui.diff_view import DiffView
from dsagent.tui.notice import NoticeLine
from dsagent.tui.reasoning import ReasoningBlock
from dsagent.tui.tool_card import ToolCard
from dsagent.tui.user_message import UserMessage
from tui_kit import call, fix_script, settings_for, step, type_and_send, wait_until, write_script

pytestmark = pytest.mark.anyio


def notices(app: DsagentApp) -> list[str]:
    return [line.text for line in app.query(NoticeLine)]


def card(app: DsagentApp, name: str) -> ToolCard | None:
    found = [c for c in app.query(ToolCard) if c.tool_name == name]
    return found[-1] if found else None


@pytest.mark.slow
async def test_full_flow_streams_asks_shows_diff_and_applies(project: Path, tmp_path: Path) -> None:
    # the first step's reasoning streams in 13 chunks over ~2.6 s: on a loaded 2-core runner the app's loop can
    # stall for most of a second, and the check below must still catch the text half-way
    script = write_script(tmp_path / "fix.jsonl", fix_script(delay=0.2))
    app = DsagentApp(settings_for(script), project, sandbox=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await type_and_send(pilot, "make test_add pass")
        # Reasoning streams: a block is open with part of the text while the step is still running.
        block = await wait_until(pilot, lambda: next(iter(app.query(ReasoningBlock)), None), what="reasoning block")
        await wait_until(pilot, lambda: block.text and not block.collapsed, what="streaming reasoning")
        assert len(block.text) < len(fix_script()[0]["reasoning_content"])
        assert app.busy and app.status_bar.activity == "thinking"
        assert [m.text for m in app.query(UserMessage)] == ["make test_add pass"]

        read = await wait_until(pilot, lambda: card(app, "read_file"), what="read_file card")
        await wait_until(pilot, lambda: read.status == "ok", what="read_file done")
        assert block.collapsed and block.title.startswith("Thought")
        assert "calc.py" in read.summary

        modal = await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen) and app.screen)
        assert modal.request.tool == "edit_file"
        assert "-    return a - b" in modal.request.diff and "+    return a + b" in modal.request.diff
        await pilot.press("y")

        await wait_until(pilot, lambda: not app.busy, what="turn end")
        edit = card(app, "edit_file")
        assert edit.status == "ok" and not edit.collapsed
        assert "+    return a + b" in edit.query_one(DiffView).diff
        assert "Fixed" in app.query(Answer).last().text
        assert "done" in notices(app)
        assert (project / "calc.py").read_text().count("a - b") == 1  # the user's tree is untouched so far

        await type_and_send(pilot, "/diff")
        patch = await wait_until(pilot, lambda: [v for v in app.query(DiffView) if v.has_class("patch")])
        assert "+    return a + b" in patch[0].diff

        await type_and_send(pilot, "/apply")
        await wait_until(pilot, lambda: any(n.startswith("applied") for n in notices(app)), what="apply")
        assert "return a + b" in (project / "calc.py").read_text()


async def test_denial_with_a_note_reaches_the_model(project: Path, tmp_path: Path) -> None:
    edit = call("edit_file", "e1", path="calc.py", old_string="a - b", new_string="a + b")
    script = write_script(tmp_path / "deny.jsonl", [step("edit it", edit), step("ok then", content="I left it.")])
    app = DsagentApp(settings_for(script), project, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_and_send(pilot, "fix add")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        await pilot.click("#note")
        await pilot.press(*"use mul instead", "enter")
        await wait_until(pilot, lambda: not app.busy, what="turn end")
        denied = card(app, "edit_file")
        assert denied.status == "failed"
    events = load_session(find_session(project)).events
    result = next(e for e in events if e.type == "tool_call_finished" and e.name == "edit_file")
    assert not result.ok and "use mul instead" in result.output
    assert "a - b" in (project / "calc.py").read_text()


async def test_allow_for_session_asks_once(project: Path, tmp_path: Path) -> None:
    first = call("edit_file", "e1", path="calc.py", old_string="a - b", new_string="a + b")
    second = call("edit_file", "e2", path="calc.py", old_string="a * b", new_string="b * a")
    script = write_script(tmp_path / "two.jsonl", [step("one", first), step("two", second), step("", content="ok")])
    app = DsagentApp(settings_for(script), project, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_and_send(pilot, "two edits")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        await pilot.press("a")
        await wait_until(pilot, lambda: not app.busy, what="turn end")
        assert [c.status for c in app.query(ToolCard)] == ["ok", "ok"]
        assert "b * a" in app.bridge.patch()


async def test_escape_cancels_a_streaming_step(project: Path, tmp_path: Path) -> None:
    # About 27 s of streaming: far longer than the test needs, so a loaded machine can't finish it first.
    long = step("thinking slowly " * 1000, delay=0.02)
    script = write_script(tmp_path / "slow.jsonl", [long])
    app = DsagentApp(settings_for(script), project, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_and_send(pilot, "think")
        block = await wait_until(pilot, lambda: next(iter(app.query(ReasoningBlock)), None))
        await wait_until(pilot, lambda: len(block.text) > 20)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.busy, timeout=5, what="cancel")
        assert "cancelled" in notices(app)
        assert block.collapsed and len(block.text) < len(long["reasoning_content"])
        assert app.status_bar.activity == "idle"
    events = load_session(find_session(project)).events
    assert events[-1].type == "turn_finished" and events[-1].reason == "cancelled"


async def test_cancel_while_approval_is_open_denies_it(project: Path, tmp_path: Path) -> None:
    edit = call("edit_file", "e1", path="calc.py", old_string="a - b", new_string="a + b")
    script = write_script(tmp_path / "ask.jsonl", [step("edit", edit)])
    app = DsagentApp(settings_for(script), project, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_and_send(pilot, "fix")
        await wait_until(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        app.action_cancel()  # what Esc does on the main screen (in the modal, Esc means deny)
        await wait_until(pilot, lambda: not app.busy, timeout=5, what="cancel")
        assert not isinstance(app.screen, ApprovalScreen)
        assert card(app, "edit_file").status == "failed"
    assert "a - b" in (project / "calc.py").read_text()


@pytest.mark.slow
async def test_resume_a_session_from_the_picker(project: Path, tmp_path: Path) -> None:
    messages = [*fix_script(), step("The user asks again.", content="It adds now.")]
    script = write_script(tmp_path / "resume.jsonl", messages)
    app = DsagentApp(settings_for(script, approval="auto"), project, sandbox=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await type_and_send(pilot, "make test_add pass")
        await wait_until(pilot, lambda: not app.busy and card(app, "finish"), what="first turn")
        first_id = find_session(project).stem
        await type_and_send(pilot, "/clear")
        await wait_until(pilot, lambda: not app.query(ToolCard) and app.bridge.run is None, what="clear")

        await type_and_send(pilot, "/sessions")
        await wait_until(pilot, lambda: app.screen.__class__.__name__ == "SessionPicker", what="picker")
        assert first_id in str(app.screen.sessions[0].id) and "make test_add pass" in app.screen.sessions[0].title
        await pilot.press("enter")
        await wait_until(pilot, lambda: any("resumed" in n for n in notices(app)) and not app.busy, what="resume")
        # The conversation is rebuilt from the session file: the prompt, the cards, the workspace change.
        assert [m.text for m in app.query(UserMessage)] == ["make test_add pass"]
        assert [c.tool_name for c in app.query(ToolCard)] == ["read_file", "edit_file", "finish"]
        assert "+    return a + b" in app.bridge.patch()

        await type_and_send(pilot, "does it add now?")
        await wait_until(pilot, lambda: not app.busy and "It adds now." in app.query(Answer).last().text)
        assert app.bridge.run.agent.session_id == first_id
    events = load_session(find_session(project, first_id)).events
    turns = [e.user_message for e in events if e.type == "turn_started"]
    assert turns == ["make test_add pass", "does it add now?"]


async def test_undo_reverts_the_last_edit_and_tells_the_model(project: Path, tmp_path: Path) -> None:
    messages = [*fix_script(), step("The user reverted it.", content="Understood.")]
    script = write_script(tmp_path / "undo.jsonl", messages)
    app = DsagentApp(settings_for(script, approval="auto"), project, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_and_send(pilot, "fix")
        await wait_until(pilot, lambda: not app.busy and card(app, "finish"))
        await type_and_send(pilot, "/undo")
        await wait_until(pilot, lambda: any("reverted" in n for n in notices(app)))
        assert app.bridge.patch() == ""
        await type_and_send(pilot, "/undo")
        await wait_until(pilot, lambda: "no edit left to undo" in notices(app))
        await type_and_send(pilot, "why?")
        await wait_until(pilot, lambda: not app.busy and "Understood." in app.query(Answer).last().text)
    events = load_session(find_session(project)).events
    last_turn = [e for e in events if e.type == "turn_started"][-1]
    assert "reverted your edits: calc.py" in last_turn.user_message and last_turn.user_message.endswith("why?")


@pytest.mark.slow
async def test_commands_help_model_unknown_and_busy(project: Path, tmp_path: Path) -> None:
    # About 25 s of streaming, cancelled with Esc below: the turn must still be running when "another" is
    # sent, however slowly a loaded machine gets there.
    script = write_script(tmp_path / "cmd.jsonl", [step("slow " * 3000, delay=0.02)])
    other = write_script(tmp_path / "other.jsonl", [step("", content="hi")])
    app = DsagentApp(settings_for(script), project, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_and_send(pilot, "/help")
        assert any("/sessions" in n for n in notices(app))
        await type_and_send(pilot, "/nope")
        assert any("unknown command /nope" in n for n in notices(app))
        await type_and_send(pilot, "/model")
        assert any("scripted:" in n and "cmd.jsonl" in n for n in notices(app))

        await type_and_send(pilot, "go")
        await wait_until(pilot, lambda: app.busy and app.query(ReasoningBlock))
        await type_and_send(pilot, "/apply")
        assert any("waits until the agent is done" in n for n in notices(app))
        await type_and_send(pilot, "another")
        assert any("still working" in n for n in notices(app))
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.busy)

        await type_and_send(pilot, "/model gpt:nowhere")
        await wait_until(pilot, lambda: any(n.startswith("--model 'gpt:nowhere': expected") for n in notices(app)))
        await type_and_send(pilot, f"/model scripted:{other}")
        await wait_until(pilot, lambda: app.status_bar.model == "other.jsonl", what="model switch")
        await type_and_send(pilot, "say hi")
        await wait_until(pilot, lambda: not app.busy and app.query(Answer) and app.query(Answer).last().text == "hi")


async def test_a_setup_error_is_one_line_and_the_app_stays_usable(project: Path, tmp_path: Path) -> None:
    app = DsagentApp(settings_for(tmp_path / "missing.jsonl"), project, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_and_send(pilot, "hello")
        await wait_until(pilot, lambda: not app.busy and any("cannot read" in n for n in notices(app)))
        errors = [line for line in app.query(NoticeLine) if line.has_class("-error")]
        assert len(errors) == 1 and "\n" not in errors[0].text and "check the path" in errors[0].text
        assert app.query_one("#prompt").has_focus


async def test_prompt_history_and_multiline(project: Path, tmp_path: Path) -> None:
    script = write_script(tmp_path / "h.jsonl", [])
    app = DsagentApp(settings_for(script), project, sandbox=False)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.query_one("#prompt")
        await type_and_send(pilot, "/help")
        await type_and_send(pilot, "/model")
        await pilot.press("up")
        assert prompt.text == "/model"
        await pilot.press("up")
        assert prompt.text == "/help"
        await pilot.press("down", "down")
        assert prompt.text == ""
        await pilot.press("a", "ctrl+j", "b")
        assert prompt.text == "a\nb"
        await pilot.press("up")  # on the second line: moves the cursor, keeps the draft
        assert prompt.text == "a\nb"


async def test_without_a_usable_sandbox_the_agent_still_works(project: Path, tmp_path: Path) -> None:
    # A missing image (or no Docker daemon at all) turns the sandbox off with a notice, not the whole run.
    script = write_script(tmp_path / "fix.jsonl", fix_script())
    settings = settings_for(script, approval="auto")
    settings.sandbox.image = "dsagent-no-such-image:none"
    app = DsagentApp(settings, project, sandbox=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_and_send(pilot, "fix add")
        await wait_until(pilot, lambda: not app.busy, timeout=60, what="turn end")
        assert any(n.startswith("sandbox unavailable, run_shell and run_tests are off") for n in notices(app))
        assert app.status_bar.sandbox == "off"
        assert "done" in notices(app) and "+    return a + b" in app.bridge.patch()
        await type_and_send(pilot, "/tests")
        await wait_until(pilot, lambda: any("needs the Docker sandbox" in n for n in notices(app)))
