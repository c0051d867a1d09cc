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
from dsagent.model.graphs import DecodeGraph, GraphPool
from dsagent.model.sampling import Sampler, SamplingParams
from dsagent.model.tokenizer import Tokenizer
from dsagent.model.transformer import Transformer
from dsagent.model.weights import load_transformer

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class Engine:
    def __init__(
        self,
        config: ModelConfig,
        model: Transformer,
        tokenizer: Tokenizer,
        path: Path | None = None,
        cuda_graphs: bool = False,
    ):
        self.config, self.model, self.tokenizer, self.path = config, model, tokenizer, path
        self.load_seconds = 0.0
        # replay one-token appends from CUDA graphs (model/graphs.py) on a CUDA model
        self.cuda_graphs = cuda_graphs
        self._graph_pool = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        options: ForwardOptions | None = None,
        progress: bool = True,
        cuda_graphs: bool | None = None,
    ) -> Engine:
        """Load a Hugging Face DeepSeek-V3/V3.2 checkpoint folder (bf16 or fp8) onto `device`.

        cuda_graphs: decode (one-token appends) by replaying CUDA graphs; by default on for CUDA devices."""
        started = time.perf_counter()
        path = Path(path).expanduser()
        config = load_config(path)
        dtype = dtype or _DTYPES.get(config.torch_dtype, torch.bfloat16)
        model = load_transformer(config, path, device, dtype, options or ForwardOptions(), progress)
        graphs = model.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        engine = cls(config, model, Tokenizer.from_checkpoint(path, config.vocab_size), path, cuda_graphs=graphs)
        engine.load_seconds = time.perf_counter() - started
        return engine

    @property
    def device(self) -> torch.device:
        return self.model.device

    def new_session(self) -> Session:
        return Session(self)

    def decode_graph(self, cache: KVCache) -> DecodeGraph | None:
        """A CUDA graph for one-token appends on `cache` (captured on its first run), or None when this
        engine decodes eagerly: graphs off, not CUDA, or the expanded form forced."""
        model = self._graph_model()
        usable = (
            self.cuda_graphs
            and model is not None
            and model.device.type == "cuda"
            and model.attention_form(1, cache.length) == "absorbed"
        )
        if not usable:
            return None
        if self._graph_pool is None:
            self._graph_pool = GraphPool(model.device)
        return self._new_graph(model, cache, self._graph_pool)

    def _graph_model(self) -> Transformer | None:
        """The model a decode graph captures (a multi-GPU engine's ranks each capture their own share)."""
        model = self.model
        return model if isinstance(model, Transformer) and model.parallel.world == 1 else None

    def _new_graph(self, model: Transformer, cache: KVCache, pool: GraphPool) -> DecodeGraph:
        return DecodeGraph(model, cache, pool)

    def weight_bytes(self) -> int:
        """Bytes of the loaded weights (fp8 blocks, scales and higher-precision tensors). Memory reached twice
        (a tensor shared by two layers, layers' weights that are views of one fused projection) counts once."""
        total, device, reach = 0, None, 0
        for dev, start, size in sorted({(str(t.device), t.data_ptr(), t.nbytes) for t in _tensors(self.model)}):
            if dev != device:  # byte ranges are merged per device
                device, reach = dev, 0
            total += max(0, start + size - max(start, reach))
            reach = max(reach, start + size)
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
        self._graph: DecodeGraph | None = None  # the decode step captured for this cache's buffers
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
        logits = self._decode(ids[0]) if len(ids) == 1 else None
        if logits is None:
            logits = self.engine.model.forward(torch.tensor(ids, dtype=torch.long), self.cache).cpu()
        if self._graph is not None and not self._graph.matches(self.cache):
            self._graph = None  # the cache was reallocated: release the old buffers the graph holds
        self.last_logits = logits
        self.tokens.extend(ids)
        return self.last_logits

    def _decode(self, token: int) -> torch.Tensor | None:
        """One token through this cache's CUDA graph -> logits, or None to run eagerly."""
        if not self.engine.cuda_graphs:
            return None
        start = self.cache.length
        self.cache.ensure(start + 1)
        if self._graph is None or not self._graph.matches(self.cache):
            self._graph = self.engine.decode_graph(self.cache)
            if self._graph is None:
                return None
        logits = self._graph.run(token, start)
        if self._graph.failed:
            self.engine.cuda_graphs = False  # what could not be captured once will not be next time
            self._graph = None
        self.cache.length = start + 1
        return logits

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
