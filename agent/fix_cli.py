"""`dsagent fix TARGET`: the command line around `agent/fix.py`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

SCOPES = ("file", "module", "suite")


def register(app: typer.Typer) -> None:
    app.command("fix")(fix)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def fix(
    target: Annotated[
        str | None,
        typer.Argument(
            help="The failing test: a pytest node id such as tests/test_parser.py::test_unicode, a test file or folder."
        ),
    ] = None,
    repo: Annotated[Path | None, typer.Option("--repo", help="Repository to work in (default: current dir).")] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="local:PATH | openai:URL\\[#model-name] | scripted:FILE")
    ] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a setting: KEY=VALUE.")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Apply a verified fix to your working tree.")] = False,
    branch: Annotated[str | None, typer.Option("--branch", help="Commit a verified fix on this new branch.")] = None,
    patch: Annotated[Path | None, typer.Option("--patch", help="Write the patch to this file.")] = None,
    allow_test_edits: Annotated[
        bool,
        typer.Option(
            "--allow-test-edits", help="Let the agent change the test files, conftest.py and test configuration."
        ),
    ] = False,
    verify: Annotated[
        str, typer.Option("--verify", help="Neighbours that must keep passing: file | module | suite.")
    ] = "file",
    headless: Annotated[
        bool,
        typer.Option(
            "--headless",
            help="JSONL events on stdout, progress on stderr, the patch in a file (the default when CI=true).",
        ),
    ] = False,
    tui: Annotated[bool, typer.Option("--tui", help="The interactive terminal view, even when CI=true.")] = False,
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON Schema of the headless stream.")] = False,
) -> None:
    """Reproduce a failing test in the sandbox, fix it, prove the fix, and hand back a patch.

    Exit codes: 0 fixed or already passing, 1 not fixed, 2 usage/config error, 3 environment error, 4 limit.
    """
    if schema:
        from dsagent.agent.fix_events import fix_event_json_schema

        typer.echo(json.dumps(fix_event_json_schema(), indent=2))
        return
    usage = _usage_problem(target, apply, branch, verify, headless, tui)
    headless = headless or (in_ci() and not tui)
    if usage:
        _stop_early(headless, usage)
    from dsagent.cli import settings_from_cli
    from dsagent.config import find_repo_root

    root = find_repo_root(repo or Path.cwd())
    if not root.is_dir():
        _stop_early(headless, f"--repo {repo} is not a directory")
    settings = settings_from_cli(repo, model, overrides).settings
    if not settings.model.path:
        _stop_early(
            headless,
            f"no model configured for the {settings.model.backend} backend; pass --model "
            "local:PATH | openai:URL[#model-name] | scripted:FILE or set [model] path in .dsagent.toml",
        )
    from dsagent.doctor import check_model

    # The model loads only once the failure is reproduced; a wrong path should not wait for the sandbox.
    model_check = check_model(settings, quick=True)
    if not model_check.ok:
        _stop_early(headless, f"--model: {model_check.detail}; {model_check.fix}")
    code = run_fix(
        settings,
        target,
        root,
        apply=apply,
        branch=branch,
        patch=patch,
        verify=verify,
        allow_test_edits=allow_test_edits,
        headless=headless,
    )
    raise typer.Exit(code)


def _usage_problem(
    target: str | None, apply: bool, branch: str | None, verify: str, headless: bool, tui: bool
) -> str | None:
    if not target:
        return 'give the failing test, e.g. dsagent fix "tests/test_parser.py::test_unicode"'
    if apply and branch:
        return "--apply and --branch exclude each other: apply the fix to your tree, or commit it on a branch"
    if verify not in SCOPES:
        return f"--verify {verify!r}: expected file, module or suite"
    if tui and headless:
        return "--headless and --tui exclude each other"
    return None


def _stop_early(headless: bool, message: str) -> None:
    from dsagent.agent.fix_events import FixFinished
    from dsagent.cli import fail

    if headless:
        typer.echo(FixFinished(outcome="usage_error", exit_code=2, message=message).model_dump_json())
    raise fail(message, 2)


def run_fix(
    settings: Any,
    target: str,
    root: Path,
    *,
    apply: bool = False,
    branch: str | None = None,
    patch: Path | None = None,
    verify: str = "file",
    allow_test_edits: bool = False,
    headless: bool = False,
) -> int:
    """Run one fix with the command line's sinks; returns the exit code."""
    from dsagent.agent.backend import make_backend
    from dsagent.agent.fix import FixOptions, FixRun
    from dsagent.agent.fix_render import FixPrinter
    from dsagent.agent.render import JsonlWriter, TextPrinter, sandbox_output
    from dsagent.cli import console, err_console

    options = FixOptions(
        target=target,
        repo=root,
        scope=verify,
        allow_test_edits=allow_test_edits,
        apply=apply,
        branch=branch,
        patch_file=patch.resolve() if patch else None,
    )
    if headless:
        sinks: list[Any] = [
            JsonlWriter(),
            ShortTask(TextPrinter(err_console, show_reasoning=False)),
            FixPrinter(err_console, compact=True),
        ]
        approve = None
    else:
        from dsagent.agent.cli import ask_on_terminal

        printer = TextPrinter(console, settings.ui.show_reasoning)
        sinks = [ShortTask(printer), FixPrinter(console, errors=err_console)]
        approve = ask_on_terminal

    def emit(event: Any) -> None:
        for sink in sinks:
            sink(event)

    fix = FixRun(settings, options, emit, lambda: make_backend(settings), approve)
    if not headless:  # the agent's commands show their progress on the terminal while they run
        printer.live = lambda: sandbox_output(fix)
    return fix.run().exit_code


class ShortTask:
    """Shows the fix prompt as one line: the failure it quotes is already on screen."""

    def __init__(self, printer: Any) -> None:
        self.printer = printer

    def __call__(self, event: Any) -> None:
        if event.type == "turn_started":
            lines = event.user_message.count("\n") + 1
            note = f"(the fix prompt, {lines} lines: the failure, the test's source, a repository map, the rules)"
            event = event.model_copy(update={"user_message": note})
        self.printer(event)
