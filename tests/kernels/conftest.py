"""Kernel tests run the Triton kernels on CUDA when a GPU is present, and otherwise on the CPU through
Triton's interpreter (TRITON_INTERPRET=1, set here before any kernel module is imported)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # kernel_kit, beside this file
ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    os.environ["TRITON_INTERPRET"] = "1"

import triton.language as tl  # noqa: E402  (after TRITON_INTERPRET is decided)
from kernel_kit import rel_rmse  # noqa: E402
from triton.runtime import interpreter  # noqa: E402

_convert_float = interpreter._convert_float
_TORCH_OF = {tl.float32: torch.float32, tl.float16: torch.float16, tl.float8e4nv: torch.float8_e4m3fn}
_NP_OF = {tl.float32: np.float32, tl.float16: np.float16}


def _rounding_convert_float(data, src, dst, rounding_mode):
    """The interpreter narrows fp32 to fp8/bf16 by cutting the mantissa (a carry never reaches the exponent:
    31.9 becomes 16 in e4m3). GPUs round to nearest even and fp8 saturates at 448; emulate that."""
    if src in _NP_OF and dst in (tl.float8e4nv, tl.bfloat16):
        x = torch.from_numpy(np.ascontiguousarray(data).view(_NP_OF[src])).float()
        if dst == tl.float8e4nv:
            return x.clamp(-448.0, 448.0).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
        return x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    return _convert_float(data, src, dst, rounding_mode)


if not ON_GPU:
    interpreter._convert_float = _rounding_convert_float

DEVICE = "cuda" if ON_GPU else "cpu"


@pytest.fixture
def device() -> str:
    return DEVICE


@pytest.fixture
def rmse():
    return rel_rmse


@pytest.fixture(autouse=True)
def _fresh_seed() -> None:
    # fresh random inputs each run; the seed is printed so a failure can be replayed
    seed = int.from_bytes(os.urandom(4), "little")
    torch.manual_seed(seed)
    print(f"torch seed {seed}")
