"""`dsagent run`, `dsagent sessions`, `dsagent resume` and `dsagent serve`."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from dsagent.agent.events import LIMIT_REASONS
from dsagent.words import counted
from rich.text import Text

if TYPE_CHECKING:
    from dsagent.agent.loop import Agent, TurnResult
    from dsagent.config import Settings

RepoOption = Annotated[Path | None, typer.Option("--repo", help="Repository to work in (default: current dir).")]
ModelOption = Annotated[
    str | None, typer.Option("--model", help="local:PATH | openai:URL\\[#model-name] | scripted:FILE")
]
SetOption = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a setting: KEY=VALUE.")]
HeadlessOption = Annotated[bool, typer.Option("--headless", help="JSONL events on stdout (see --schema).")]
PatchOption = Annotated[Path | None, typer.Option("--patch", help="Also write the final patch to this file.")]
NoSandboxOption = Annotated[bool, typer.Option("--no-sandbox", help="Run without Docker (no run_shell/run_tests).")]

# Exit codes: 0 done, 1 not done, 2 usage or config error, 3 environment error, 4 a limit was reached.
EXIT_CODES = {"finished": 0, "answered": 0} | dict.fromkeys(LIMIT_REASONS, 4)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("sessions")(sessions)
    app.command("resume")(resume)
    app.command("serve")(serve)


def run(
    task: Annotated[str | None, typer.Argument(help="What the agent should do.")] = None,
    repo: RepoOption = None,
    model: ModelOption = None,
    overrides: SetOption = None,
    headless: HeadlessOption = False,
    patch: PatchOption = None,
    approval: Annotated[str | None, typer.Option("--approval", help="auto | ask | read-only")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Most model steps.")] = None,
    no_sandbox: NoSandboxOption = False,
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON Schema of the event stream.")] = False,
    gpus: Annotated[int | None, typer.Option("--gpus", min=1, help="Split the local model over N GPUs.")] = None,
) -> None:
    """Run one task in the repository: an isolated workspace, the sandbox and the agent; prints the patch."""
    from dsagent.cli import fail, settings_from_cli

    if schema:
        from dsagent.agent.events import event_json_schema

        typer.echo(json.dumps(event_json_schema(), indent=2))
        return
    if not task:
        raise fail('give a task, e.g. dsagent run "make the failing test in tests/test_x.py pass"')
    settings = settings_from_cli(
        repo, model, overrides, **{"agent.approval": approval, "agent.max_steps": max_steps, "model.gpus": gpus}
    ).settings
    _execute(settings, _root(repo), headless, patch, no_sandbox, task=task)


def resume(
    session_id: Annotated[str | None, typer.Argument(help="Session id or its start (default: the newest).")] = None,
    message: Annotated[str | None, typer.Argument(help="A new message; needed when the last turn finished.")] = None,
    repo: RepoOption = None,
    model: ModelOption = None,
    overrides: SetOption = None,
    headless: HeadlessOption = False,
    patch: PatchOption = None,
    no_sandbox: NoSandboxOption = False,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="Re-run the session's tool calls against its recorded model outputs and compare the results.",
        ),
    ] = False,
) -> None:
    """Continue a saved session (its workspace changes and conversation restored), or replay it."""
    from dsagent.agent.session import SessionError, find_session, load_session
    from dsagent.cli import fail, settings_from_cli

    root = _root(repo)
    try:
        saved = load_session(find_session(root, session_id))
    except SessionError as exc:
        raise fail(str(exc)) from None
    if replay:
        from dsagent.agent.replay import replay_session

        code = replay_session(saved, root, headless, patch, no_sandbox, _sinks(headless, True))
        raise typer.Exit(code)
    spec = model or _model_spec(saved.header.model)
    settings = settings_from_cli(repo, spec, overrides).settings
    _execute(settings, root, headless, patch, no_sandbox, saved=saved, message=message)


def _execute(
    settings: Settings,
    root: Path,
    headless: bool,
    patch: Path | None,
    no_sandbox: bool,
    *,
    task: str = "",
    saved: Any = None,
    message: str | None = None,
) -> None:
    from dsagent.agent.backend import BackendError, make_backend
    from dsagent.agent.render import TextPrinter, print_patch
    from dsagent.agent.runner import AgentRun, RunSetupError
    from dsagent.cli import console, err_console, fail
    from rich.markup import escape

    try:
        backend = make_backend(settings)
        if saved is not None:
            _skip_replayed_script(backend, saved)
        sinks = _sinks(headless, settings.ui.show_reasoning)
        agent_run = AgentRun(
            settings,
            root,
            backend,
            task=task or (saved.header.task if saved else ""),
            sinks=sinks,
            approve=None if headless else ask_on_terminal,
            sandbox=not no_sandbox,
            saved=saved,
        )
        if agent_run.sandbox is not None:
            for sink in sinks:
                if isinstance(sink, TextPrinter):
                    sink.live = agent_run.sandbox.live_output  # the sandbox is there from the start
    except BackendError as exc:
        raise fail(str(exc), 2 if exc.kind == "config" else 3) from None
    except RunSetupError as exc:
        raise fail(str(exc), exc.code) from None
    try:
        with _cancel_on_ctrl_c(agent_run.agent):
            result = _turn(agent_run.agent, task, saved, message)
        outcome = agent_run.finish(patch)
    finally:
        agent_run.close()
        backend.close()
    if not headless:
        print_patch(console, outcome.diff)
        err_console.print(
            f"[dim]session {agent_run.agent.session_id} saved in {escape(str(agent_run.session_path))}; continue "
            f'it with `dsagent resume {agent_run.agent.session_id} "message"`[/]',
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(_exit_code(agent_run.agent, result))


def _turn(agent: Agent, task: str, saved: Any, message: str | None) -> TurnResult:
    from dsagent.cli import fail

    if saved is None:
        return agent.run(task)
    if message:
        return agent.send(message)
    if agent.conversation.turn == 0 and saved.header.task:
        return agent.run(saved.header.task)  # stopped before its task reached the agent
    if agent.conversation.finished:
        raise fail(
            f'the last turn of session {saved.id} is finished; continue with: dsagent resume {saved.id} "next message"'
        )
    return agent.resume()


def _exit_code(agent: Agent, result: TurnResult) -> int:
    if result.reason == "error" and agent.last_error is not None and agent.last_error.kind != "script":
        return 3
    return EXIT_CODES.get(result.reason, 1)


def _sinks(headless: bool, show_reasoning: bool) -> list:
    from dsagent.agent.render import JsonlWriter, TextPrinter
    from dsagent.cli import console

    return [JsonlWriter()] if headless else [TextPrinter(console, show_reasoning)]


def _root(repo: Path | None) -> Path:
    from dsagent.config import find_repo_root

    return find_repo_root(repo or Path.cwd())


def _model_spec(identity: dict[str, Any]) -> str | None:
    """The --model spec that reopens the backend a session used (keys come from config/env, never the file)."""
    backend = identity.get("backend")
    if backend == "openai":
        return f"openai:{identity['url']}" + (f"#{identity['name']}" if identity.get("name") else "")
    if backend == "local" and identity.get("script"):
        return None  # a scripted run on the local engine: give --model and --set explicitly to resume it
    if backend in ("local", "scripted") and identity.get("path"):
        return f"{backend}:{identity['path']}"
    return None


def _skip_replayed_script(backend: Any, saved: Any) -> None:
    """A scripted backend continues where the session left off, not at its first line."""
    script = getattr(backend, "script", None) or (backend if getattr(backend, "next_entry", None) else None)
    if script is None:
        return
    for event in saved.events:
        if event.type == "assistant_message":
            script.next_entry(event.purpose)


def ask_on_terminal(request: Any, console: Any = None, stream: Any = None) -> Any:
    """The `ask` policy on a terminal: y = once, a = for the rest of the session, n = deny (with a note).
    `console` and `stream` (where answers are read) default to the terminal's."""
    from dsagent.agent.approval import ApprovalDecision
    from rich.prompt import Prompt

    if console is None:
        from dsagent.cli import console
    console.print(Text(f"approve {request.name}?", style="bold yellow"))
    for line, style in _proposal(request):
        console.print(Text(line, style=style), soft_wrap=True)
    question = Text("[y]es once, [a]lways this session, [n]o")
    answer = Prompt.ask(question, choices=["y", "a", "n"], default="y", console=console, stream=stream)
    if answer == "n":
        note = Prompt.ask(Text("note for the model (optional)"), default="", console=console, stream=stream)
        return ApprovalDecision(choice="deny", note=note)
    return ApprovalDecision(choice="session" if answer == "a" else "once")


def _proposal(request: Any) -> list[tuple[str, str]]:
    """What the call would do, as (line, style): the command, an edit's old and new text, or the arguments."""
    args = request.arguments
    if request.command:
        return [(f"  $ {request.command}", "")]
    if request.name == "edit_file" and isinstance(args.get("path"), str):
        old, new = str(args.get("old_string", "")), str(args.get("new_string", ""))
        lines = [(f"  {args['path']}" + (" (every occurrence)" if args.get("replace_all") else ""), "bold")]
        lines += [(f"  - {line}", "red") for line in old.splitlines()[:40]]
        return lines + [(f"  + {line}", "green") for line in new.splitlines()[:40]]
    if request.name == "write_file" and isinstance(args.get("path"), str):
        content = str(args.get("content", ""))
        return [(f"  {args['path']}: write {len(content.splitlines())} lines", "bold")]
    return [("  " + json.dumps(args, ensure_ascii=False)[:300], "")]


@contextmanager
def _cancel_on_ctrl_c(agent: Agent) -> Iterator[None]:
    """The first Ctrl-C cancels the run cleanly (the session stays consistent); a second one aborts.

    Signal handlers can only be set from the main thread; elsewhere (a TUI worker) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, previous)
        agent.cancel()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def sessions(repo: RepoOption = None) -> None:
    """List the saved sessions of the repository, newest first."""
    import datetime as dt

    from dsagent.agent.session import list_sessions
    from dsagent.cli import console

    found = list_sessions(_root(repo))
    if not found:
        console.print('no sessions yet; start one with dsagent run "task"')
        return
    # Two lines a session, never wrapped inside the id: it is what `dsagent resume` takes.
    for item in found:
        started = dt.datetime.fromtimestamp(item.created).strftime("%Y-%m-%d %H:%M")
        style = STATUS_STYLE.get(item.status, "yellow")
        head = Text.assemble((item.id, "bold"), "  ", started, "  ", (item.status, style))
        head.append(f"  {counted(item.steps, 'step')}  {item.model}", style="dim")
        console.print(head, soft_wrap=True)
        console.print(Text("    " + " ".join(item.task.split())), overflow="ellipsis", no_wrap=True)


STATUS_STYLE = {"finished": "green", "answered": "green", "unfinished": "cyan"}


def serve(
    path: Annotated[Path, typer.Argument(help="Checkpoint folder (Hugging Face layout).")],
    port: Annotated[int, typer.Option("--port", help="TCP port (0 picks a free one).")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; loopback by default.")] = "127.0.0.1",
    name: Annotated[str | None, typer.Option("--name", help="Model id to report (default: folder name).")] = None,
    script: Annotated[
        Path | None,
        typer.Option(
            "--script", help="Feed the assistant turns of this scripted session through the engine (demos/tests)."
        ),
    ] = None,
    overrides: SetOption = None,
    gpus: Annotated[int | None, typer.Option("--gpus", min=1, help="Split the model over this many GPUs.")] = None,
) -> None:
    """An OpenAI-compatible /v1/chat/completions and /v1/models over the local engine.

    Set DSAGENT_SERVE_API_KEY to require `Authorization: Bearer <key>`."""
    from dsagent.agent.serve_cli import run_server

    run_server(path, port, host, name, script, overrides, gpus)
