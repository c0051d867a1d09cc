"""`dsagent sandbox build | prune | shell`: the Docker side of dsagent."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

sandbox_app = typer.Typer(help="Build the sandbox image, remove leftover containers.", no_args_is_help=True)

RepoOption = Annotated[Path | None, typer.Option("--repo", help="Repository whose settings to use (default: cwd).")]


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")


def _progress(start: float):
    from dsagent.cli import err_console
    from rich.text import Text

    def show(line: str) -> None:
        err_console.print(Text.assemble((f"{time.monotonic() - start:6.1f}s ", "dim"), line), soft_wrap=True)

    return show


@sandbox_app.command("build")
def build(
    repo: RepoOption = None,
    env: Annotated[
        bool, typer.Option("--env", help="Also build the repository's environment layer (its test dependencies).")
    ] = False,
    mirror: Annotated[
        str | None, typer.Option("--mirror", help="Debian mirror for debootstrap (default: the host's apt sources).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when the image is up to date.")] = False,
) -> None:
    """Build the sandbox image (once; later runs return at once while its recipe is unchanged)."""
    from dsagent.cli import console, fail, settings_from_cli
    from dsagent.sandbox.base import SandboxError
    from dsagent.sandbox.daemon import connect
    from dsagent.sandbox.image import build_base_image

    settings = settings_from_cli(repo).settings.sandbox
    progress = _progress(time.monotonic())
    try:
        client = connect(timeout=600)
        tag = build_base_image(client, settings.image, settings.base_image, mirror, progress, force)
        if env:
            from dsagent.sandbox.envlayer import ensure_env_image

            tag = ensure_env_image(client, (repo or Path.cwd()).resolve(), settings, progress, force)
    except SandboxError as exc:
        raise fail(str(exc), 3) from None
    console.print(f"sandbox image: {tag}", highlight=False)


@sandbox_app.command("prune")
def prune_command(
    all_: Annotated[bool, typer.Option("--all", help="Also remove containers of sessions still running.")] = False,
) -> None:
    """Remove sandbox containers left behind by sessions that ended (by their label)."""
    from dsagent.cli import console, fail
    from dsagent.sandbox.base import SandboxError
    from dsagent.sandbox.daemon import connect
    from dsagent.sandbox.prune import prune

    try:
        removed = prune(connect(), only_orphans=not all_)
    except SandboxError as exc:
        raise fail(str(exc), 3) from None
    console.print(f"removed {len(removed)} container(s)" + (f": {', '.join(removed)}" if removed else ""))


@sandbox_app.command("run")
def run_command(
    command: Annotated[str, typer.Argument(help="bash command line")],
    repo: RepoOption = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds (default: sandbox.command_timeout).")
    ] = None,
) -> None:
    """Run one command in a fresh sandbox container on the repository itself (as the agent would)."""
    from dsagent.cli import fail, settings_from_cli
    from dsagent.config import find_repo_root
    from dsagent.sandbox.base import SandboxError
    from dsagent.sandbox.container import DockerSandbox

    root = find_repo_root(repo or Path.cwd())
    settings = settings_from_cli(root).settings.sandbox
    try:
        with DockerSandbox(root, settings) as sandbox:
            result = sandbox.exec(command, timeout)
    except SandboxError as exc:
        raise fail(str(exc), 3) from None
    typer.echo(result.output, nl=False)
    typer.echo(f"[{result.summary()}]", err=True)
    raise typer.Exit(result.exit_code if not result.timed_out else 124)
