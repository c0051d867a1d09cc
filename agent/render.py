"""Two consumers of the event stream for the command line: readable text and JSONL."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from dsagent.agent.events import Event
from rich.console import Console
from rich.markup import escape
from rich.text import Text

OUTPUT_PREVIEW_LINES = 6
LIVE_TOOLS = ("run_shell", "run_tests")  # commands whose progress a terminal shows while they run


class JsonlWriter:
    """One event per line, flushed at once: the headless stream (schema: `dsagent run --schema`)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        self.stream.write(event.model_dump_json() + "\n")
        self.stream.flush()

    def write_extra(self, payload: dict[str, Any]) -> None:
        self.stream.write(json.dumps(payload, ensure_ascii=False) + "\n")
        self.stream.flush()


def tail_lines(text: str, count: int) -> str:
    """The last `count` lines of text."""
    return "\n".join(text.rstrip("\n").splitlines()[-count:])


def sandbox_output(run: Any) -> str:
    """What the command running now in `run`'s sandbox (an AgentRun or FixRun, or None) has printed so far;
    "" when none runs or there is no sandbox yet."""
    sandbox = getattr(run, "sandbox", None)
    return sandbox.live_output() if sandbox is not None else ""


class LiveStatus:
    """On a terminal, while a command runs: a spinner line with its time and its latest output line."""

    def __init__(self, console: Console, name: str, live: Callable[[], str]) -> None:
        self.name, self.live, self.started = name, live, time.monotonic()
        self._stop = threading.Event()
        self._status = console.status(self.text(), spinner="dots")
        self._status.start()
        self._thread = threading.Thread(target=self._refresh, daemon=True)
        self._thread.start()

    def text(self) -> Text:
        last = tail_lines(self.live(), 1).strip()[:100]
        suffix = f" · {last}" if last else ""
        return Text(f"{self.name} {time.monotonic() - self.started:.0f}s{suffix}", style="dim")

    def _refresh(self) -> None:
        while not self._stop.wait(0.5):
            self._status.update(self.text())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._status.stop()


class TextPrinter:
    """The run as a person reads it: reasoning dimmed, tool calls one line each with a short result."""

    def __init__(self, console: Console | None = None, show_reasoning: bool = True) -> None:
        self.console = console or Console()
        self.show_reasoning = show_reasoning
        self._streaming: str | None = None  # "reasoning" / "content" while a delta run is open
        self.live: Callable[[], str] | None = None
        """What the sandbox command running now has printed; set once the sandbox exists."""
        self._status: LiveStatus | None = None

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)

    def _delta(self, kind: str, text: str, style: str) -> None:
        if self._streaming != kind:
            self._end_stream()
            self._streaming = kind
        self.console.print(escape(text), style=style, end="", highlight=False, soft_wrap=True)

    def _end_stream(self) -> None:
        if self._streaming is not None:
            self.console.print()
            self._streaming = None

    def _line(self, text: str, style: str = "") -> None:
        self._end_stream()
        self.console.print(text, style=style, highlight=False, soft_wrap=True)

    def _on_session_started(self, event: Any) -> None:
        model = event.model
        label = model.get("name") or model.get("path") or model.get("url") or ""
        scripted = (
            " — [bold yellow]scripted[/] (recorded model turns; tools, edits and tests are real)"
            if event.scripted
            else ""
        )
        verb = "resumed" if event.resumed else "session"
        self._line(f"[dim]{verb} {event.session_id} · {model.get('backend')} {escape(str(label))}[/]{scripted}")

    def _on_turn_started(self, event: Any) -> None:
        self._line(f"[bold]> {escape(event.user_message)}[/]")

    def _on_reasoning_delta(self, event: Any) -> None:
        if self.show_reasoning:
            self._delta("reasoning", event.text, "dim italic")

    def _on_content_delta(self, event: Any) -> None:
        self._delta("content", event.text, "")

    def _on_tool_call_started(self, event: Any) -> None:
        args = ", ".join(f"{k}={_short(v)}" for k, v in event.arguments.items())
        self._line(f"[cyan]▶ {escape(event.name)}[/]([dim]{escape(args)}[/])")
        if event.name in LIVE_TOOLS and self.live is not None and self.console.is_terminal:
            self._status = LiveStatus(self.console, event.name, self.live)

    def _on_approval_decided(self, event: Any) -> None:
        if not event.approved:
            note = f": {escape(event.note)}" if event.note else ""
            self._line(f"[yellow]  refused ({event.by}){note}[/]")

    def _end_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _on_tool_call_finished(self, event: Any) -> None:
        self._end_status()
        mark = "[green]✓[/]" if event.ok else "[red]✗[/]"
        self._line(f"  {mark} {escape(event.name)} [dim]{event.duration:.2f}s[/]")
        lines = event.output.splitlines()
        for line in lines[:OUTPUT_PREVIEW_LINES]:
            self._line(f"    [dim]{escape(line[:160])}[/]")
        if len(lines) > OUTPUT_PREVIEW_LINES:
            self._line(f"    [dim]… {len(lines) - OUTPUT_PREVIEW_LINES} more lines[/]")

    def _on_usage(self, event: Any) -> None:
        speed = f", {event.tokens_per_s:.1f} tok/s" if event.tokens_per_s else ""
        guess = " (estimated)" if event.estimated else ""
        self._line(
            f"[dim]  step {event.step}: prompt {event.prompt_tokens} (prefilled {event.prefilled}, "
            f"reused {event.reused}), generated {event.generated}{speed}{guess}[/]"
        )

    def _on_context_compacted(self, event: Any) -> None:
        what = []
        if event.elided:
            what.append(f"elided {len(event.elided)} old tool outputs")
        if event.shortened:
            what.append(f"shortened {len(event.shortened)} outputs")
        if event.summary is not None:
            what.append(f"summarised {event.summary_end - event.summary_start} messages")
        self._line(
            f"[yellow]  context: {', '.join(what)} ({event.prompt_tokens_before} -> "
            f"{event.prompt_tokens_after} tokens)[/]"
        )

    def _on_notice(self, event: Any) -> None:
        self._line(f"[yellow]  {escape(event.text)}[/]")

    def _on_error(self, event: Any) -> None:
        self._line(f"[bold red]error:[/] {escape(event.message)}")

    def _on_turn_finished(self, event: Any) -> None:
        self._end_status()  # a turn may end under a running command
        style = "green" if event.reason in ("finished", "answered") else "yellow"
        summary = f": {escape(event.summary)}" if event.summary and event.reason != "answered" else ""
        self._line(
            f"[bold {style}]■ {event.reason}[/] after {event.steps} steps, {event.generated_tokens} tokens, "
            f"{event.elapsed:.1f}s{summary}"
        )


def print_patch(console: Console, diff: str) -> None:
    """A unified diff, coloured line by line and never wrapped: a copied or redirected patch still applies."""
    if not diff.strip():
        console.print("[dim]no changes[/]")
        return
    styles = {"+": "green", "-": "red", "@": "cyan"}
    for line in diff.splitlines():
        style = "bold" if line.startswith(("+++", "---", "diff ")) else styles.get(line[:1], "")
        console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"
