"""The KV cache of one session: per layer and token, the normalised (fp8 round-tripped) latent and the
RoPE key in one row `[kv_lora_rank + qk_rope_head_dim]`, plus the indexer key (fp8) and its scale.

Storage grows in chunks as tokens arrive; nothing is preallocated for the maximum context.
"""

from __future__ import annotations

import torch
from dsagent.kernels.fp8 import FP8
from dsagent.model.config import ModelConfig

CHUNK = 256


class LayerCache:
    def __init__(self, config: ModelConfig, dtype: torch.dtype, device: torch.device | str):
        self.kv = torch.empty(0, config.kv_lora_rank + config.qk_rope_head_dim, dtype=dtype, device=device)
        self.index_k: torch.Tensor | None = None
        self.index_scale: torch.Tensor | None = None
        if config.has_indexer:
            self.index_k = torch.empty(0, config.index_head_dim, dtype=FP8, device=device)
            self.index_scale = torch.empty(0, dtype=torch.float32, device=device)

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.kv, self.index_k, self.index_scale) if t is not None]

    def reserve(self, capacity: int, keep: int) -> None:
        """Grow every buffer to `capacity` rows, keeping the first `keep` rows."""

        def grown(t: torch.Tensor) -> torch.Tensor:
            new = torch.empty(capacity, *t.shape[1:], dtype=t.dtype, device=t.device)
            new[:keep] = t[:keep]
            return new

        self.kv = grown(self.kv)
        if self.index_k is not None:
            self.index_k, self.index_scale = grown(self.index_k), grown(self.index_scale)

    def copy(self, length: int) -> LayerCache:
        other = object.__new__(LayerCache)
        other.kv = self.kv[:length].clone()
        other.index_k = None if self.index_k is None else self.index_k[:length].clone()
        other.index_scale = None if self.index_scale is None else self.index_scale[:length].clone()
        return other


def write_rows(buffer: torch.Tensor, start: int | torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Store rows [T, ...] at positions start.. of a cache buffer -> the rows queries may read.

    With an int start that is buffer[: start + T]. With `start` the positions [T] as a device tensor (a step
    captured in a CUDA graph, where no host value may change), the rows are scattered there and the whole
    buffer is returned: the caller masks every row past each query's position.
    """
    if isinstance(start, torch.Tensor):
        target = buffer.view(torch.uint8) if buffer.dtype == FP8 else buffer  # index_copy_ has no fp8 kernel
        target.index_copy_(0, start, rows.view(target.dtype))
        return buffer
    end = start + rows.shape[0]
    buffer[start:end] = rows
    return buffer[:end]


class KVCache:
    """Per-layer caches sharing one length; rows >= length are free space."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype, device: torch.device | str):
        self.layers = [LayerCache(config, dtype, device) for _ in range(config.num_hidden_layers)]
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.layers[0].kv.shape[0] if self.layers else 0

    def ensure(self, total: int) -> None:
        """Make room for `total` tokens: grow by whole chunks, at least a quarter of the current size."""
        if total <= self.capacity:
            return
        target = max(total, self.capacity + self.capacity // 4)
        capacity = -(-target // CHUNK) * CHUNK
        for layer in self.layers:
            layer.reserve(capacity, self.length)

    def truncate(self, length: int) -> None:
        self.length = max(0, min(length, self.length))

    def fork(self) -> KVCache:
        other = object.__new__(KVCache)
        other.layers = [layer.copy(self.length) for layer in self.layers]
        other.length = self.length
        return other

    def nbytes(self) -> int:
        """Bytes held by the cached tokens (allocated chunk space beyond them excluded)."""
        per_row = sum(t[:1].nbytes for layer in self.layers for t in layer.tensors())
        return per_row * self.length

    def allocated_bytes(self) -> int:
        return sum(t.nbytes for layer in self.layers for t in layer.tensors())
