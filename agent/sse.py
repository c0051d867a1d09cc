"""Reading an OpenAI-style chat-completions event stream (server-sent events)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dsagent.agent.backend import OnDelta, StepUsage


def sse_lines(lines: Iterable[str]) -> Iterator[str]:
    """The `data:` payloads of a stream, up to `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield data


@dataclass
class StreamState:
    """What the chunks of one streamed completion add up to."""

    reasoning: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    raw_usage: dict[str, Any] = field(default_factory=dict)
    first_token_at: float | None = None
    started: bool = False  # something reached the caller: a retry would repeat it

    def feed(self, chunk: dict[str, Any], on_delta: OnDelta, t0: float) -> None:
        if chunk.get("usage"):
            self.raw_usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if self.first_token_at is None and delta:
                self.first_token_at = time.perf_counter() - t0
            for key, kind, sink in (
                ("reasoning_content", "reasoning", self.reasoning),
                ("content", "content", self.content),
            ):
                text = delta.get(key)
                if text:
                    sink.append(text)
                    self.started = True
                    on_delta(kind, text)
            for part in delta.get("tool_calls") or []:
                self._call_part(part)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def _call_part(self, part: dict[str, Any]) -> None:
        self.started = True
        call = self.calls.setdefault(part.get("index", len(self.calls)), {"id": "", "name": "", "arguments": ""})
        function = part.get("function") or {}
        call["id"] = part.get("id") or call["id"]
        call["name"] += function.get("name") or ""
        call["arguments"] += function.get("arguments") or ""

    def tool_calls(self) -> list[dict[str, Any]]:
        from dsagent.agent.parsing import new_call_id

        return [
            {
                "id": call["id"] or new_call_id(),
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"] or "{}"},
            }
            for _, call in sorted(self.calls.items())
        ]

    def usage(self, t0: float) -> StepUsage:
        raw = self.raw_usage
        prompt = int(raw.get("prompt_tokens") or 0)
        details = raw.get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or raw.get("prompt_cache_hit_tokens") or 0)
        generated = int(raw.get("completion_tokens") or 0)
        total = time.perf_counter() - t0
        first = self.first_token_at if self.first_token_at is not None else total
        return StepUsage(
            prompt_tokens=prompt,
            prefilled=prompt - cached,
            reused=cached,
            generated=generated,
            prefill_seconds=first,
            decode_seconds=max(0.0, total - first),
        )
