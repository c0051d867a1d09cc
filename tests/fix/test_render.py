"""What `dsagent fix` and `dsagent run` print: the patch, whose lines stay whole on a narrow or redirected
console (so what lands in a terminal's scrollback or a file still applies with `git apply`), and fix's last line."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from dsagent.agent.events import Patch, ToolCallFinished, ToolCallStarted
from dsagent.agent.fix_events import FixFinished
from dsagent.agent.fix_render import FixPrinter
from dsagent.agent.render import TextPrinter, print_patch
from rich.console import Console

LONG = "def paginate(items: list, page: int, per_page: int = 10, *, strict: bool = True) -> list:  # long line\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def a_patch(repo: Path) -> str:
    """A real diff with a line longer than any console here is wide; the tree is left at the base."""
    (repo / "pages.py").write_text(LONG + "    return items\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    (repo / "pages.py").write_text(LONG.replace("True", "False") + "    return items[:per_page]\n")
    diff = git(repo, "diff")
    git(repo, "checkout", "-q", "pages.py")
    return diff


def narrow_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=40, force_terminal=False, color_system=None), out


def test_both_printers_keep_patch_lines_whole_and_the_text_applies(git_repo: Path) -> None:
    diff = a_patch(git_repo)
    assert max(len(line) for line in diff.splitlines()) > 80

    fix_console, fix_out = narrow_console()
    FixPrinter(fix_console)(Patch(diff=diff, files=["pages.py"]))
    run_console, run_out = narrow_console()
    print_patch(run_console, diff)

    for printed in (fix_out.getvalue(), run_out.getvalue()):
        assert printed == diff
        (git_repo / "printed.patch").write_text(printed)
        git(git_repo, "apply", "--check", "printed.patch")


def test_an_empty_patch_says_so() -> None:
    console, out = narrow_console()
    print_patch(console, "")
    assert out.getvalue() == "no changes\n"


@pytest.mark.parametrize(
    ("outcome", "code", "message", "shown"),
    [
        ("fixed", 0, "fixed t.py::x; review the patch", "fixed t.py::x; review the patch"),
        ("not_fixed", 1, "not fixed: the target still fails", "not fixed: the target still fails"),
        ("not_fixed", 1, "fixed t.py::x, but the branch exists", "not fixed: fixed t.py::x, but the branch exists"),
        ("limit", 4, "stopped: 30 steps; the target still fails", "limit: stopped: 30 steps; the target still fails"),
    ],
)
def test_the_last_line_names_the_outcome_once(outcome: str, code: int, message: str, shown: str) -> None:
    console, out = narrow_console()
    FixPrinter(console)(FixFinished(outcome=outcome, exit_code=code, message=message))
    assert out.getvalue() == shown + "\n"


def test_a_running_command_shows_its_time_and_latest_line_on_a_terminal() -> None:
    out = io.StringIO()
    printer = TextPrinter(Console(file=out, force_terminal=True, width=80))
    printer.live = lambda: "collecting\ntests/test_a.py ..F\n"
    printer(ToolCallStarted(step=1, call_id="c1", name="run_tests", arguments={}))
    status = printer._status
    assert status is not None and str(status.text()) == "run_tests 0s · tests/test_a.py ..F"
    done = dict(step=1, call_id="c1", name="run_tests", ok=False, output="1 failed", started_at=0.0, duration=0.5)
    printer(ToolCallFinished(**done))
    assert printer._status is None and not status._thread.is_alive()
    assert "✗" in out.getvalue() and "run_tests \x1b[2m0.50s" in out.getvalue()  # the result line follows

    piped = TextPrinter(Console(file=io.StringIO(), force_terminal=False))  # a log, not a terminal: no spinner
    piped.live = printer.live
    piped(ToolCallStarted(step=1, call_id="c2", name="run_shell", arguments={"command": "ls"}))
    assert piped._status is None
