"""The scripted backend: replays recorded assistant messages. For tests and demos, never a model.

The script is JSONL, one assistant message per line in OpenAI format (`reasoning_content`, `content`,
`tool_calls`). Optional keys of a line: `raw` (DSML text instead of a message, run through the real
stream parser, e.g. to script a malformed call), `purpose: "summary"` (the answer to a context
summary request), `delay` (seconds to wait between chunks, for cancellation tests). Each message is
streamed in small chunks like a model would. Everything it produces is labelled scripted.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from dsagent.agent.backend import (
    BackendError,
    Completion,
    CompletionRequest,
    OnDelta,
    StepUsage,
    assistant_message,
    check_arguments,
    estimate_tokens,
)

CHUNK_CHARS = 12


class ScriptedBackend:
    scripted = True

    def __init__(self, entries: list[dict[str, Any]], source: str = "<memory>", chunk_delay: float = 0.0) -> None:
        self.entries = entries
        self.position = 0
        self.used: set[int] = set()  # summary lines already answered
        self.chunk_delay = chunk_delay
        self.identity = {"backend": "scripted", "path": source, "scripted": True, "messages": len(entries)}
        self.requests: list[CompletionRequest] = []  # every request, in order: what the "model" was shown

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> ScriptedBackend:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            reason = f"cannot read the scripted session {path} ({exc.strerror}); check the path"
            raise BackendError(reason, "config") from None
        entries = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BackendError(f"{path}:{number}: not a JSON object ({exc.msg}); fix that line", "config") from None
            if not isinstance(entry, dict):
                raise BackendError(f"{path}:{number}: expected one assistant message per line", "config")
            entries.append(entry)
        return cls(entries, source=str(path), **kwargs)

    def complete(self, request: CompletionRequest, on_delta: OnDelta, stop: threading.Event) -> Completion:
        self.requests.append(request)
        entry = self.next_entry(request.purpose)
        if entry is None:
            if request.purpose == "summary":
                # No recorded summary here: an empty note makes the loop write a mechanical one.
                message = assistant_message("", "", [])
                return Completion(message, self._usage(request, message))
            raise BackendError(
                f"the scripted session has no more messages (it holds {len(self.entries)}); "
                "the run needed another step",
                "script",
            )
        delay = float(entry.get("delay", self.chunk_delay))
        if "raw" in entry:
            return self._replay_raw(entry["raw"], request, on_delta, stop, delay)
        return self._replay_message(entry, request, on_delta, stop, delay)

    def count_tokens(self, messages: list[dict[str, Any]], thinking: bool = True) -> int:
        from dsagent.agent.backend import encoded_prompt

        return estimate_tokens(encoded_prompt(messages, thinking))

    def close(self) -> None:
        return None

    def next_entry(self, purpose: str) -> dict[str, Any] | None:
        """The next step line; or, for a summary request, the first unused summary line ahead (its place
        in the script does not have to match the step where the context runs full)."""
        if purpose == "summary":
            for index in range(self.position, len(self.entries)):
                if self.entries[index].get("purpose") == "summary" and index not in self.used:
                    self.used.add(index)
                    return self.entries[index]
            return None
        while self.position < len(self.entries):
            entry = self.entries[self.position]
            self.position += 1
            if entry.get("purpose", "step") == "step":
                return entry
        return None

    def _replay_message(
        self, entry: dict[str, Any], request: CompletionRequest, on_delta: OnDelta, stop: threading.Event, delay: float
    ) -> Completion:
        reasoning = entry.get("reasoning_content") or ""
        content = entry.get("content") or ""
        tool_calls = [dict(call) for call in entry.get("tool_calls") or []]
        emitted: dict[str, list[str]] = {"reasoning": [], "content": []}
        for kind, text in (("reasoning", reasoning), ("content", content)):
            for start in range(0, len(text), CHUNK_CHARS):
                if _wait(stop, delay):
                    return self._cancelled(request, emitted)
                chunk = text[start : start + CHUNK_CHARS]
                emitted[kind].append(chunk)
                on_delta(kind, chunk)
        if tool_calls and _wait(stop, delay):
            return self._cancelled(request, emitted)
        message = assistant_message(content, reasoning, tool_calls)
        malformed = check_arguments(tool_calls, request.tools)
        return Completion(message, self._usage(request, message), malformed=malformed)

    def _cancelled(self, request: CompletionRequest, emitted: dict[str, list[str]]) -> Completion:
        partial = assistant_message("".join(emitted["content"]), "".join(emitted["reasoning"]), [])
        return Completion(partial, self._usage(request, partial), stopped="cancelled")

    def _replay_raw(
        self, raw: str, request: CompletionRequest, on_delta: OnDelta, stop: threading.Event, delay: float
    ) -> Completion:
        from dsagent.agent.parsing import CompletionParser

        parser = CompletionParser(request.tools, on_delta, thinking=request.thinking)
        stopped = "end"
        for start in range(0, len(raw), CHUNK_CHARS):
            if _wait(stop, delay):
                stopped = "cancelled"
                break
            parser.feed(raw[start : start + CHUNK_CHARS])
        message, malformed, format_errors = parser.finish()
        if stopped == "cancelled":
            message.pop("tool_calls", None)
            malformed, format_errors = {}, []
        return Completion(
            message, self._usage(request, message), stopped=stopped, malformed=malformed, format_errors=format_errors
        )

    def _usage(self, request: CompletionRequest, message: dict[str, Any]) -> StepUsage:
        # No model ran: token counts are estimates and there is no speed to report.
        generated = estimate_tokens(json.dumps(message, ensure_ascii=False))
        prompt = self.count_tokens(request.messages, request.thinking)
        return StepUsage(prompt_tokens=prompt, prefilled=prompt, reused=0, generated=generated, estimated=True)


def _wait(stop: threading.Event, delay: float) -> bool:
    """Pause `delay` seconds between chunks; True when the run was stopped meanwhile."""
    if delay > 0:
        return stop.wait(delay)
    return stop.is_set()
