"""The local backend: the in-process engine with one KV cache kept across every step.

Each step renders the whole conversation (`generation_prompt`), maps it to token ids and calls
`session.sync(ids)`, which keeps the longest common prefix with what is cached and processes only
the rest: a tool result costs its own tokens, never a re-prefill. The ids of text the model wrote are
the ids it generated (not a re-tokenisation), so its own turns always match the cache; when a new
user message drops earlier reasoning from the prompt, the cache is cut back to the first changed token.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsagent.agent.backend import BackendError, Completion, CompletionRequest, OnDelta, StepUsage, encoded_prompt
from dsagent.agent.parsing import CompletionParser

if TYPE_CHECKING:
    from dsagent.agent.scripted import ScriptedBackend
    from dsagent.config import Settings
    from dsagent.model.engine import Engine, Session


@dataclass
class TokenCache:
    """A session plus the text behind its tokens, in segments: prompt pieces and completions."""

    session: Session
    segments: list[tuple[str, list[int]]] = field(default_factory=list)
    used: float = field(default_factory=time.monotonic)

    def text_length(self) -> int:
        return sum(len(piece) for piece, _ in self.segments)

    def matched_chars(self, text: str) -> int:
        """Characters `text` shares with the start of the cached text."""
        pos = 0
        for piece, _ in self.segments:
            if text.startswith(piece, pos):
                pos += len(piece)
                continue
            return pos + len(os.path.commonprefix([piece, text[pos : pos + len(piece)]]))
        return pos

    def ids_for(self, text: str, encode: Any, remember: bool = True) -> list[int]:
        """Token ids of `text`: the ids of every leading segment it repeats, then the rest encoded."""
        ids: list[int] = []
        kept: list[tuple[str, list[int]]] = []
        pos = 0
        for piece, piece_ids in self.segments:
            if not text.startswith(piece, pos):
                break
            kept.append((piece, piece_ids))
            ids.extend(piece_ids)
            pos += len(piece)
        if pos < len(text):
            rest_ids = encode(text[pos:])
            kept.append((text[pos:], rest_ids))
            ids.extend(rest_ids)
        if remember:
            self.segments = kept
        return ids


class LocalModel:
    """Generation over the engine into a `TokenCache`; shared by the local backend and `dsagent serve`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.tokenizer = engine.tokenizer

    def new_cache(self) -> TokenCache:
        return TokenCache(self.engine.new_session())

    def complete(
        self,
        cache: TokenCache,
        prompt: str,
        request: CompletionRequest,
        on_delta: OnDelta,
        stop: threading.Event,
        forced: str | None = None,
    ) -> Completion:
        """Prefill what `cache` lacks of `prompt`, then generate (or, with `forced`, feed that exact text
        through the same decode path token by token: a scripted completion on the real engine)."""
        from dsagent.model.dsml import EOS_ID

        cache.used = time.monotonic()
        ids = cache.ids_for(prompt, self.tokenizer.encode)
        started = time.perf_counter()
        try:
            prefilled = cache.session.sync(ids)
        except ValueError as exc:
            raise BackendError(f"the local model cannot read this prompt: {exc}", "model") from None
        prefill_seconds = time.perf_counter() - started
        parser = CompletionParser(request.tools, on_delta, thinking=request.thinking)
        decoder = self.tokenizer.stream()
        tokens: list[int] = []
        started = time.perf_counter()
        stopped = "length"
        for token in self._tokens(cache, request, forced):
            if token == EOS_ID:
                stopped = "end"
                break
            tokens.append(token)
            parser.feed(decoder.feed(token))
            if stop.is_set():
                stopped = "cancelled"
                break
        else:
            stopped = "end" if cache.session.finish_reason == "eos" else "length"
        parser.feed(decoder.flush())
        if stopped == "end":
            tokens.append(EOS_ID)
            if len(cache.session) < len(ids) + len(tokens):
                cache.session.append([EOS_ID])  # so the next step finds the whole completion cached
        decode_seconds = time.perf_counter() - started
        cache.segments.append((self.tokenizer.decode(tokens), tokens))
        message, malformed, format_errors = parser.finish()
        if stopped == "cancelled":
            message.pop("tool_calls", None)
            malformed, format_errors = {}, []
        usage = StepUsage(
            prompt_tokens=len(ids),
            prefilled=prefilled,
            reused=len(ids) - prefilled,
            generated=len(tokens),
            prefill_seconds=prefill_seconds,
            decode_seconds=decode_seconds,
        )
        return Completion(message, usage, stopped=stopped, malformed=malformed, format_errors=format_errors)

    def _tokens(self, cache: TokenCache, request: CompletionRequest, forced: str | None):
        if forced is not None:
            # Teacher forcing: one decode step per token, exactly as generation would cost. The caller
            # stops at EOS before it is appended, as generate() never appends EOS either.
            for token in self.tokenizer.encode(forced)[: request.max_new_tokens]:
                yield token
                cache.session.append([token])
            cache.session.finish_reason = "length"
            return
        from dsagent.model.sampling import SamplingParams

        s = request.sampling
        params = SamplingParams(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, seed=s.seed)
        yield from cache.session.generate(request.max_new_tokens, params)


class LocalBackend:
    """The `local` backend. With `script`, the assistant's messages come from a scripted session and are
    fed through the engine token by token (labelled scripted): real prefill, cache and decode costs."""

    def __init__(self, engine: Engine, script: ScriptedBackend | None = None, path: str | None = None) -> None:
        self.model = LocalModel(engine)
        self.cache = self.model.new_cache()
        self.script = script
        self.scripted = script is not None
        self.identity = {
            "backend": "local",
            "path": path or str(engine.path),
            "model_type": engine.config.model_type,
            "device": str(engine.device),
            "dtype": str(engine.model.dtype).removeprefix("torch."),
            "scripted": self.scripted,
        }
        if script is not None:
            self.identity["script"] = script.identity["path"]
        self.last_prompt = ""

    @classmethod
    def from_settings(cls, settings: Settings, script: ScriptedBackend | None = None) -> LocalBackend:
        return cls(load_engine(settings), script, settings.model.path)

    def complete(self, request: CompletionRequest, on_delta: OnDelta, stop: threading.Event) -> Completion:
        prompt = encoded_prompt(request.messages, request.thinking)
        forced = forced_text(self.script, request) if self.script is not None else None
        if self.script is not None and forced is None:  # no recorded summary: the loop writes one itself
            return Completion({"role": "assistant", "content": "", "reasoning_content": ""}, StepUsage())
        if request.purpose == "summary":
            # A side request: a scratch session keeps the conversation's cache as it is.
            return self.model.complete(self.model.new_cache(), prompt, request, on_delta, stop, forced)
        self.last_prompt = prompt
        return self.model.complete(self.cache, prompt, request, on_delta, stop, forced)

    def count_tokens(self, messages: list[dict[str, Any]], thinking: bool = True) -> int:
        return len(self.cache.ids_for(encoded_prompt(messages, thinking), self.model.tokenizer.encode, False))

    def close(self) -> None:
        self.cache.session.truncate(0)


def forced_text(script: ScriptedBackend, request: CompletionRequest) -> str | None:
    """The next scripted completion as the model would have written it (DSML text ending in EOS), or
    None when the script holds no summary for a summary request."""
    from dsagent.model.dsml import EOS_TOKEN, encode_messages

    entry = script.next_entry(request.purpose)
    if entry is None:
        if request.purpose == "summary":
            return None
        raise BackendError(f"the scripted session has no more messages (it holds {len(script.entries)})", "script")
    if "raw" in entry:
        raw = entry["raw"]
        return raw if raw.endswith(EOS_TOKEN) else raw + EOS_TOKEN
    message = {key: entry[key] for key in ("role", "content", "reasoning_content", "tool_calls") if key in entry}
    message["role"] = "assistant"
    return encode_messages([message], thinking=request.thinking, context=request.messages)


def load_engine(settings: Settings) -> Engine:
    """The engine for `model.path`, on `model.device` in `model.dtype` (auto: bf16 on GPU, fp32 on CPU)."""
    import torch
    from dsagent.model.engine import Engine

    model = settings.model
    path = Path(model.path or "").expanduser()
    if not (path / "config.json").is_file():
        raise BackendError(
            f"no checkpoint at {path} (config.json missing); pass --model local:PATH to a "
            "checkpoint folder, or create one with `dsagent model init`",
            "config",
        )
    device = model.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = None if model.dtype == "auto" else getattr(torch, model.dtype)
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        if model.gpus > 1:
            from dsagent.model.launcher import launch

            return launch(path, model.gpus, device=device.split(":")[0], dtype=dtype, cuda_graphs=model.gpu_graphs)
        return Engine.from_pretrained(path, device=device, dtype=dtype, progress=False)
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot load the checkpoint at {path}: {exc}", "model") from None
