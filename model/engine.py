"""The engine: a loaded model plus sessions that keep their KV cache alive between calls.

engine = Engine.from_pretrained("ckpt/")
session = engine.new_session()
logits = session.append(engine.tokenizer.encode("Hello"))
for token in session.generate(32): ...
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from dsagent.model.cache import KVCache
from dsagent.model.config import ForwardOptions, ModelConfig, load_config
from dsagent.model.sampling import Sampler, SamplingParams
from dsagent.model.tokenizer import Tokenizer
from dsagent.model.transformer import Transformer
from dsagent.model.weights import load_transformer

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class Engine:
    def __init__(self, config: ModelConfig, model: Transformer, tokenizer: Tokenizer, path: Path | None = None):
        self.config, self.model, self.tokenizer, self.path = config, model, tokenizer, path
        self.load_seconds = 0.0

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        options: ForwardOptions | None = None,
        progress: bool = True,
    ) -> Engine:
        """Load a Hugging Face DeepSeek-V3/V3.2 checkpoint folder (bf16 or fp8) onto `device`."""
        started = time.perf_counter()
        path = Path(path).expanduser()
        config = load_config(path)
        dtype = dtype or _DTYPES.get(config.torch_dtype, torch.bfloat16)
        model = load_transformer(config, path, device, dtype, options or ForwardOptions(), progress)
        engine = cls(config, model, Tokenizer.from_checkpoint(path, config.vocab_size), path)
        engine.load_seconds = time.perf_counter() - started
        return engine

    @property
    def device(self) -> torch.device:
        return self.model.device

    def new_session(self) -> Session:
        return Session(self)

    def weight_bytes(self) -> int:
        """Bytes of the loaded weights (fp8 blocks, scales and higher-precision tensors)."""
        seen: set[int] = set()
        total = 0
        for tensor in _tensors(self.model):
            if tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())
                total += tensor.nbytes
        return total


def _tensors(obj, depth: int = 0) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _tensors(item, depth + 1)
    elif hasattr(obj, "__dict__") and depth < 6 and not isinstance(obj, ModelConfig | ForwardOptions):
        for name, value in vars(obj).items():
            if name not in ("_dense", "rope"):  # derived tables and dequantised caches are not weights
                yield from _tensors(value, depth + 1)


class Session:
    """One token sequence and its KV cache. Not thread-safe; fork() for independent continuations."""

    def __init__(self, engine: Engine, cache: KVCache | None = None, tokens: list[int] | None = None):
        self.engine = engine
        self.cache = cache or KVCache(engine.config, engine.model.dtype, engine.device)
        self.tokens: list[int] = list(tokens or [])
        self.last_logits: torch.Tensor | None = None  # logits after the last cached token, when known
        self.finish_reason: str | None = None  # why the last generate() stopped: eos, stop, length

    def __len__(self) -> int:
        return len(self.tokens)

    @torch.inference_mode()
    def append(self, ids: Iterable[int]) -> torch.Tensor:
        """Process new tokens after the cached ones -> fp32 logits [vocab] of the last position."""
        ids = list(ids)
        if not ids:
            if self.last_logits is None:
                raise ValueError("append() needs at least one token when no logits are cached")
            return self.last_logits
        vocab = self.engine.config.vocab_size
        if min(ids) < 0 or max(ids) >= vocab:
            raise ValueError(f"token ids must be in [0, {vocab}); got {min(ids)}..{max(ids)}")
        tensor = torch.tensor(ids, dtype=torch.long)
        self.last_logits = self.engine.model.forward(tensor, self.cache).cpu()
        self.tokens.extend(ids)
        return self.last_logits

    def truncate(self, length: int) -> None:
        """Forget every token from position `length` on."""
        if length < len(self.tokens):
            self.tokens = self.tokens[: max(0, length)]
            self.cache.truncate(len(self.tokens))
            self.last_logits = None

    def fork(self) -> Session:
        """An independent copy: both continue from here without affecting each other."""
        other = Session(self.engine, self.cache.fork(), self.tokens)
        other.last_logits = self.last_logits
        return other

    def sync(self, ids: Iterable[int]) -> int:
        """Make the session hold exactly `ids`: keep the longest common prefix, truncate, append the rest.

        Returns how many tokens were processed. At least the last token is recomputed when the logits
        after it are unknown, so `last_logits` is always valid afterwards (for a non-empty sequence).
        """
        ids = list(ids)
        if not ids:
            self.truncate(0)
            return 0
        common = 0
        for a, b in zip(self.tokens, ids, strict=False):
            if a != b:
                break
            common += 1
        if common == len(ids) == len(self.tokens) and self.last_logits is not None:
            return 0
        if common == len(ids):
            common -= 1  # the logits after the last token are needed: recompute it
        self.truncate(common)
        if len(ids) > common:
            self.append(ids[common:])
        return len(ids) - common

    def cache_bytes(self) -> int:
        return self.cache.nbytes()

    def generate(
        self,
        max_new_tokens: int,
        sampling: SamplingParams | None = None,
        stop: Iterable[str] | None = None,
    ) -> Iterator[int]:
        """Yield new token ids as they come. Stops at an end-of-sequence id (not yielded), after the token
        that completes one of the `stop` strings, or after max_new_tokens. Every yielded token except the
        last is in the session afterwards (the last one is added by the next append or sync)."""
        sampler = Sampler(sampling or SamplingParams())
        stops = [s for s in (stop or []) if s]
        eos = set(self.engine.config.eos_ids)
        decoder = self.engine.tokenizer.stream()
        text = ""
        if self.last_logits is None:
            if not self.tokens:
                raise ValueError("generate() needs a prompt: append tokens first")
            self.sync(self.tokens)
        logits = self.last_logits
        self.finish_reason = "length"
        for step in range(max_new_tokens):
            token = sampler(logits)
            if token in eos:
                self.finish_reason = "eos"
                return
            yield token
            if stops:
                piece = decoder.feed(token)
                text += piece
                if piece and any(s in text[-(len(s) + len(piece)) :] for s in stops):
                    self.finish_reason = "stop"
                    return
            if step + 1 < max_new_tokens:
                logits = self.append([token])
