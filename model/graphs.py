"""CUDA-graph replay of the one-token decode step.

A decode step launches a few hundred small kernels per layer; replaying them from a captured graph removes
the Python launch gaps. A graph bakes in the addresses of one session's cache buffers, so it is captured for
one cache allocation: the token and its position are static device inputs, the position drives RoPE, the
cache-row writes and the causal masks (`Transformer.step_at`), and attention reads the whole allocated
buffer with every row past the position masked. The same graph therefore serves every position, after
truncate() too, until the cache is reallocated (it grows a chunk; a fork has its own buffers); then the
step is captured again.
"""

from __future__ import annotations

import logging
import threading

import torch
from dsagent.model.cache import KVCache
from dsagent.model.transformer import Transformer

log = logging.getLogger(__name__)


def _buffers(cache: KVCache) -> list[torch.Tensor]:
    return [t for layer in cache.layers for t in layer.tensors()]


class GraphPool:
    """The memory pool shared by one engine's decode graphs, and the lock that serialises their use.

    Graphs that share a pool may reuse each other's intermediate memory, which is safe when replays never
    overlap and each replay's logits are copied out before the next one starts: the lock ensures both.

    The allocator keeps a pool while some graph captured into it lives; once every session that captured one
    is gone, capturing into the same pool again fails an internal assertion, and every later session would
    decode eagerly. A one-kernel graph made with the pool holds it for the engine's lifetime."""

    def __init__(self, device: torch.device) -> None:
        self.handle = torch.cuda.graph_pool_handle()
        self.lock = threading.Lock()
        self._holder = _trivial_graph(device, self.handle)


class DecodeGraph:
    """The captured decode step of one cache allocation. `run` captures on first use and replays afterwards."""

    def __init__(self, model: Transformer, cache: KVCache, pool: GraphPool):
        self.model, self.cache, self.pool = model, cache, pool
        self.buffers = _buffers(cache)  # kept so the captured addresses stay allocated while the graph lives
        self.inputs = torch.zeros(2, dtype=torch.long, device=model.device)  # the token, its position
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None  # [V] fp32, the graph's output buffer
        self.failed = False  # capture was impossible: the caller should stay eager
        self.replays = 0

    def matches(self, cache: KVCache) -> bool:
        """Whether `cache` still uses the buffers this graph was made for."""
        buffers = _buffers(cache)
        return len(buffers) == len(self.buffers) and all(a is b for a, b in zip(buffers, self.buffers, strict=True))

    def run(self, token: int, position: int) -> torch.Tensor:
        """Process `token` at `position` (the cache has room for it) -> fp32 logits [V] on the CPU.

        The cache's length is left to the caller."""
        with self.pool.lock:
            self.inputs.copy_(torch.tensor([token, position], dtype=torch.long))
            if self.graph is None:
                return self._first_run().cpu()
            self.graph.replay()
            self.replays += 1
            return self.logits.cpu()

    def _step(self) -> torch.Tensor:
        return self.model.step_at(self.inputs[:1], self.inputs[1:], self.cache)

    def _first_run(self) -> torch.Tensor:
        # The step runs for real first, on a side stream as capture wants: it compiles the kernels for these
        # shapes and fills lazy caches (dequantised weights) outside the capture. Capture records without
        # executing, so this run's logits are the answer for this token.
        side = torch.cuda.Stream(self.model.device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            logits = self._step()
        torch.cuda.current_stream().wait_stream(side)
        graph, stream = torch.cuda.CUDAGraph(), torch.cuda.current_stream()
        try:
            with torch.cuda.graph(graph, pool=self.pool.handle, capture_error_mode="thread_local"):
                self.logits = self._step()
            self.graph = graph
        except Exception as exc:  # e.g. an op that synchronises with the host cannot be captured
            log.warning("decode step not captured in a CUDA graph, running eagerly: %s", exc)
            self.failed, self.logits = True, None
            torch.cuda.set_stream(stream)  # a failed capture_end leaves the capture stream current
            _leave_rng_capture(self.model.device)
        return logits


def _leave_rng_capture(device: torch.device) -> None:
    """A capture that fails ends before torch takes the CUDA generators out of capture mode, and every later
    random op on the GPU (sampling) would then raise. One capture that succeeds, of a trivial op, does it."""
    _trivial_graph(device)


def _trivial_graph(device: torch.device, pool=None) -> torch.cuda.CUDAGraph:
    """A graph of one in-place add on the device, captured (into `pool` when given)."""
    scratch = torch.zeros(1, device=device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.device(device), torch.cuda.graph(graph, pool=pool):
        scratch.add_(1)
    return graph
