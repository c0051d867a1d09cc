"""`dsagent tool`, `dsagent index` and `dsagent map`: the tools for people and scripts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

DirArgument = Annotated[Path | None, typer.Argument(help="Repository directory (default: current dir).")]


def register(app: typer.Typer) -> None:
    app.command("tool")(tool)
    app.command("index")(index)
    app.command("map")(repo_map)


def _root(directory: Path | None) -> Path:
    from dsagent.cli import fail
    from dsagent.config import find_repo_root

    path = (directory or Path.cwd()).resolve()
    if not path.is_dir():
        raise fail(f"{path} is not a directory; pass an existing repository directory")
    return find_repo_root(path)


def tool(
    name: Annotated[str, typer.Argument(help="Tool name, e.g. read_file, search_code, edit_file.")],
    arguments: Annotated[str, typer.Argument(help="Arguments as a JSON object.")] = "{}",
    repo: Annotated[Path | None, typer.Option("--repo", help="Repository to work in (default: current dir).")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Apply a change to the repository (3-way).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
) -> None:
    """Run one tool call and print its result (exit 1 when the result is an error).

    Tools that change files run in a temporary git workspace; the repository changes only with --apply."""
    from dsagent.cli import console, fail
    from dsagent.sandbox.lazy import LazySandbox
    from dsagent.tools.registry import default_registry, workspace_registry

    try:
        args = json.loads(arguments)
    except json.JSONDecodeError as exc:
        example = '{"path": "x.py"}'
        raise fail(f"arguments are not valid JSON ({exc.msg} at column {exc.colno}); e.g. '{example}'") from None
    if not isinstance(args, dict):
        raise fail('arguments must be a JSON object, e.g. \'{"path": "x.py"}\'')
    root = _root(repo)
    registry = default_registry(root, sandbox=LazySandbox(root))  # starts a container only if a command runs
    mutates = name in registry and registry[name].mutates
    if not mutates:
        result = registry.call(name, args)
        _print(result, as_json)
        raise typer.Exit(0 if result.ok else 1)

    from dsagent.sandbox.workspace import Workspace, WorkspaceError

    try:
        workspace = Workspace(root)
    except WorkspaceError as exc:
        raise fail(f"{exc} (tools that change files run in a git workspace)") from None
    with workspace:
        sandbox = LazySandbox(workspace.root)
        result = workspace_registry(workspace, sandbox=sandbox).call(name, args)
        sandbox.close()
        _print(result, as_json)
        if not result.ok or not workspace.changed_files():
            raise typer.Exit(0 if result.ok else 1)
        if not apply:
            message = f"(ran in a temporary workspace; {root} is unchanged: pass --apply to apply it)"
            console.print(message, style="dim", soft_wrap=True, markup=False, highlight=False)
            raise typer.Exit(0)
        outcome = workspace.apply_to_user_tree()
        if not outcome.applied:
            raise fail(f"not applied: {outcome.message}", code=1)
        console.print(outcome.message, style="green", soft_wrap=True, markup=False, highlight=False)


def _print(result, as_json: bool) -> None:
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        typer.echo(result.text)


def index(
    directory: DirArgument = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Parser processes (default: all cores).")] = None,
) -> None:
    """Build or update the code index (.dsagent/index) and print counts and time."""
    from dsagent.cli import console
    from dsagent.tools.code_index import CodeIndex
    from dsagent.tools.context import default_index_dir
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    root = _root(directory)
    start = time.perf_counter()
    code_index = CodeIndex(root, default_index_dir(root), workers=workers)
    columns = (TextColumn("parsing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("parse", total=None)
        stats = code_index.refresh(lambda done, total: progress.update(task, completed=done, total=total))
    files, defs, refs = code_index.counts()
    code_index.prune_store()
    code_index.close()
    elapsed = time.perf_counter() - start
    console.print(
        f"indexed {files} files in {elapsed:.2f} s: {stats.parsed} parsed, {stats.from_store} from the store, "
        f"{stats.removed} removed; {defs} definitions, {refs} references",
        soft_wrap=True,
    )


def repo_map(
    directory: DirArgument = None,
    focus: Annotated[str | None, typer.Option("--focus", help="Files or symbols to center the map on.")] = None,
    tokens: Annotated[int, typer.Option("--tokens", help="Token budget.")] = 2048,
) -> None:
    """Print the repository map: the most important definitions, ranked, within a token budget."""
    from dsagent.cli import console
    from dsagent.tools.context import ToolContext

    context = ToolContext(_root(directory))
    context.fresh_index()
    result = context.repo_map.render(focus, tokens)
    typer.echo(result.text)
    if result.unknown_focus:
        unknown = ", ".join(result.unknown_focus)
        console.print(f"focus matched nothing for: {unknown}", style="yellow", markup=False, highlight=False)
    context.close()
