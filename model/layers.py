"""Building blocks shared by attention and feed-forward code: linear layers (bf16 or fp8), norms, RoPE.

Shape legend: T tokens, H heads, R RoPE dims, D model dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from dsagent.kernels.fp8 import fp8_linear, weight_dequant
from dsagent.kernels.norm import add_rms_norm, layer_norm, rms_norm  # noqa: F401  (the model's import point)
from dsagent.kernels.rope import apply_rope  # noqa: F401  (the model's import point)
from dsagent.model.config import ModelConfig

# Elements of a bf16 weight converted to fp32 at once by matmul_fp32 (4 MiB of fp32, cache-sized).
_CONVERT_BUDGET = 1 << 20


class Linear:
    """y = x @ W^T. W is bf16 (or the engine's dtype), or fp8 e4m3 with 128x128 block scales."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor | None = None):
        self.weight = weight  # [N, K]
        self.scale = scale  # [ceil(N/128), ceil(K/128)] fp32 for fp8 weights
        self._dense: torch.Tensor | None = None

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            return F.linear(x, self.weight)
        return fp8_linear(x, self.weight, self.scale).to(x.dtype)

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight in `dtype`, dequantised once and kept (used for kv_b_proj in the absorbed form)."""
        if self.scale is None:
            return self.weight.to(dtype)
        if self._dense is None or self._dense.dtype != dtype:
            self._dense = weight_dequant(self.weight, self.scale).to(dtype)
        return self._dense

    def nbytes(self) -> int:
        return self.weight.nbytes + (0 if self.scale is None else self.scale.nbytes)


def fuse_rows(linears: list[Linear]) -> Linear | None:
    """One Linear whose rows are those of `linears` in order, for layers that read the same input: one GEMM
    instead of several at decode, where each small GEMM costs its launch and ramp-up more than its bytes. The
    given layers' weights (and scales) become views of the fused ones, so nothing is held twice. None where
    they can't be stacked: fewer than two, different dtypes, devices or input widths, or an fp8 layer before
    the last whose rows don't fill whole 128-row scale blocks."""
    if len(linears) < 2:
        return None
    first = linears[0].weight
    fp8 = linears[0].scale is not None
    kind = lambda layer: (layer.scale is not None, layer.weight.dtype, layer.weight.device, layer.weight.shape[1])
    if any(kind(layer) != kind(linears[0]) for layer in linears):
        return None
    if fp8 and any(layer.out_features % 128 for layer in linears[:-1]):
        return None
    weight = torch.cat([layer.weight.view(torch.uint8) if fp8 else layer.weight for layer in linears]).view(first.dtype)
    scale = torch.cat([layer.scale for layer in linears]) if fp8 else None
    row = block = 0
    for layer in linears:
        n, blocks = layer.out_features, 0 if scale is None else layer.scale.shape[0]
        layer.weight, layer._dense = weight[row : row + n], None
        if scale is not None:
            layer.scale = scale[block : block + blocks]
        row, block = row + n, block + blocks
    return Linear(weight, scale)


_SIDE_STREAMS: dict[int, torch.cuda.Stream] = {}


def side_stream(device: torch.device) -> torch.cuda.Stream:
    """One side stream per GPU, kept for the process (a CUDA graph captures work forked onto it)."""
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SIDE_STREAMS:
        _SIDE_STREAMS[idx] = torch.cuda.Stream(idx)
    return _SIDE_STREAMS[idx]


def capturing_decode(x: torch.Tensor, rows: int) -> bool:
    """Whether x's step (at most `rows` tokens) is being captured into a CUDA graph: work forked onto a side
    stream then costs nothing at replay, while launched from Python the stream switches cost host time."""
    return x.is_cuda and x.shape[0] <= rows and torch.cuda.is_current_stream_capturing()


def matmul_fp32(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [..., K] @ weight [N, K]^T in fp32 without an fp32 copy of the whole weight (the LM head).

    Row blocks of the weight are converted into one reused fp32 buffer (fresh allocations would fault in
    new pages for every block). One row on CUDA (decode) goes to a Triton GEMV that reads the weight as it is."""
    if x.is_cuda:
        from dsagent.kernels.gemv_triton import gemv_fits, gemv_fp32_triton

        if gemv_fits(x, weight):
            return gemv_fp32_triton(x, weight)
    x = x.float()
    if weight.dtype == torch.float32:
        return x @ weight.T
    n, k = weight.shape
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    out = torch.empty(x2.shape[0], n, dtype=torch.float32, device=x.device)
    # on a GPU, small blocks would mean hundreds of launches per token; 64M elements is 256 MiB of fp32
    budget = _CONVERT_BUDGET if x.device.type == "cpu" else 1 << 26
    rows = max(1, min(n, budget // max(k, 1)))
    buffer = torch.empty(rows, k, dtype=torch.float32, device=x.device)
    for start in range(0, n, rows):
        block = buffer[: min(rows, n - start)]
        block.copy_(weight[start : start + rows])
        torch.mm(x2, block.T, out=out[:, start : start + block.shape[0]])
    return out.view(*lead, n)


# -- RoPE ------------------------------------------------------------------------------------------
def _yarn_frequencies(config: ModelConfig) -> torch.Tensor:
    """Inverse frequencies [R/2] fp32, with YaRN's blend of interpolated and original frequencies."""
    dim, base = config.qk_rope_head_dim, config.rope_theta
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    scaling = config.rope_scaling or {}
    if scaling.get("type", scaling.get("rope_type")) != "yarn" or config.rope_factor <= 1:
        return freqs
    original = scaling.get("original_max_position_embeddings", 4096)
    beta_fast, beta_slow = scaling.get("beta_fast", 32), scaling.get("beta_slow", 1)

    def correction_dim(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    smooth = 1 - ramp
    return freqs / config.rope_factor * (1 - smooth) + freqs * smooth


def _yarn_cos_sin_scale(config: ModelConfig) -> float:
    scaling = config.rope_scaling or {}
    factor = config.rope_factor
    if factor <= 1 or scaling.get("type", scaling.get("rope_type")) != "yarn":
        return 1.0

    def mscale(m: float) -> float:
        return 0.1 * m * math.log(factor) + 1.0 if m else 1.0

    return mscale(scaling.get("mscale", 1.0)) / mscale(scaling.get("mscale_all_dim", 0.0))


class Rope:
    """cos/sin tables for absolute positions, computed on demand (no max-length precomputation)."""

    def __init__(self, config: ModelConfig, device: torch.device | str = "cpu"):
        self.freqs = _yarn_frequencies(config).to(device)
        self.scale = _yarn_cos_sin_scale(config)

    def tables(self, start: int | torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [T, R/2] fp32 for positions start .. start+length-1, or for the positions [T] given as a
        device tensor (no host synchronisation, for CUDA graphs)."""
        if isinstance(start, torch.Tensor):
            pos = start.to(torch.float32)
        else:
            pos = torch.arange(start, start + length, device=self.freqs.device, dtype=torch.float32)
        angles = torch.outer(pos, self.freqs)
        return torch.cos(angles) * self.scale, torch.sin(angles) * self.scale
