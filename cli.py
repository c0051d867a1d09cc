"""The `dsagent` command. It only wires subcommands; each lives beside the code it drives."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from dsagent import __version__
from dsagent.config import ConfigError, LoadedSettings, describe_fields, load_settings, parse_model_spec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    name="dsagent",
    help="An autonomous coding agent for the terminal, driven by a local DeepSeek-V3.2 model.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

console = Console()
err_console = Console(stderr=True)

# Modules that add subcommands: each exposes `register(app)`.
SUBCOMMAND_MODULES: list[str] = ["dsagent.tools.cli", "dsagent.agent.cli", "dsagent.model.cli", "dsagent.agent.fix_cli",
                                   "dsagent.sandbox.cli"]

RepoOption = Annotated[Path | None, typer.Option("--repo", help="Repository to work in (default: current dir).")]
ModelOption = Annotated[
    str | None, typer.Option("--model", help="local:PATH | openai:URL[#model-name] | scripted:FILE")
]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a setting: KEY=VALUE (dotted key).")
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise. The message is plain text (paths, `[model]`)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def settings_from_cli(repo: Path | None = None, model: str | None = None,
                      overrides: list[str] | None = None, **flags: Any) -> LoadedSettings:
    """Load the layered settings with the command line on top; config errors exit 2 with one line."""
    dotted: dict[str, Any] = {}
    try:
        if model:
            dotted.update(parse_model_spec(model))
        for item in overrides or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set agent.max_steps=20")
            dotted[key.strip()] = value
        dotted.update({k: v for k, v in flags.items() if v is not None})
        return load_settings(repo, dotted)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _version(value: bool) -> None:
    if value:
        console.print(f"dsagent {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    repo: RepoOption = None,
    model: ModelOption = None,
    overrides: SetOption = None,
) -> None:
    """With no command: open the pairing UI (--repo, --model and --set apply to it)."""
    if ctx.invoked_subcommand is None:
        tui = importlib.util.find_spec("dsagent.tui.app")
        if tui is None:
            console.print(ctx.get_help())
            raise typer.Exit()
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise fail(
                "the pairing UI needs a terminal (stdin and stdout are not one here); without one, use "
                '`dsagent run "task" --headless` or `dsagent fix TARGET --headless`'
            )
        settings = settings_from_cli(repo, model, overrides).settings
        importlib.import_module("dsagent.tui.app").run_tui(settings, repo)


@app.command()
def doctor(repo: RepoOption = None, model: ModelOption = None, overrides: SetOption = None) -> None:
    """Check Python, Docker, GPU, the configured model and the grammars; print how to fix what is missing."""
    from dsagent.doctor import run_checks

    settings = settings_from_cli(repo, model, overrides).settings
    table = Table(title="dsagent doctor", show_lines=False)
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    failed = False
    for check in run_checks(settings):
        if check.ok:
            status = "[green]ok[/]"
        elif check.required:
            status, failed = "[red]missing[/]", True
        else:
            status = "[yellow]optional[/]"
        table.add_row(check.name, status, check.detail, check.fix)
    console.print(table)
    if failed:
        raise typer.Exit(1)


@config_app.command("show")
def config_show(repo: RepoOption = None, model: ModelOption = None, overrides: SetOption = None) -> None:
    """Print every setting, its effective value and the layer it came from."""
    loaded = settings_from_cli(repo, model, overrides)
    table = Table(title="effective configuration")
    for column in ("setting", "value", "from", "meaning"):
        table.add_column(column, overflow="fold")
    for key, value, origin, doc in describe_fields(loaded.settings, loaded.sources):
        table.add_row(key, value, origin, " ".join(doc.split("\n\n")[0].split()))  # the first paragraph, whole
    console.print(table)


for _module in SUBCOMMAND_MODULES:
    importlib.import_module(_module).register(app)
