"""A multi-GPU engine: rank 0 offers the usual Engine/Session API, the other ranks follow its commands.

Every model step runs on all ranks together (their collectives pair up), so before rank 0 touches a session's
cache it broadcasts a small command: NEW session, FORWARD ids, DECODE one token at a position (each rank
replays its own CUDA graph of the step: captured together, their collectives pair up in the replays too),
TRUNCATE to n, FORK into a new id, FREE, STOP.
Commands travel over a gloo group on the CPU with no timeout, so an idle follower waits on a socket rather
than on the GPU. Each rank keeps its own KV cache of every session (the latent is the same on all ranks).
"""

from __future__ import annotations

import itertools
import sys
import threading
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import Any

import torch
from dsagent.model.cache import KVCache
from dsagent.model.config import ModelConfig
from dsagent.model.engine import Engine, Session
from dsagent.model.graphs import DecodeGraph, GraphPool
from dsagent.model.parallel import ParallelContext
from dsagent.model.tokenizer import Tokenizer
from dsagent.model.transformer import Transformer


class Op(IntEnum):
    NEW = 1
    FORWARD = 2
    TRUNCATE = 3
    FORK = 4
    FREE = 5
    STOP = 6
    DECODE = 7


class CommandChannel:
    """Rank 0 sends, the others receive: a header [op, session, argument, token count, flag], then the ids."""

    def __init__(self, group: Any):
        self.group = group
        self.lock = threading.RLock()  # one command (and the step it starts) at a time
        self._ids = itertools.count(1)
        self._freed: deque[int] = deque()  # filled by finalizers, which must not take the lock

    def new_id(self) -> int:
        return next(self._ids)

    def release(self, session: int) -> None:
        self._freed.append(session)

    def send(self, op: Op, session: int = 0, arg: int = 0, ids: torch.Tensor | None = None, flag: int = 0) -> None:
        with self.lock:
            while self._freed:
                self._post(Op.FREE, self._freed.popleft(), 0, None, 0)
            self._post(op, session, arg, ids, flag)

    def _post(self, op: Op, session: int, arg: int, ids: torch.Tensor | None, flag: int) -> None:
        import torch.distributed as dist

        count = 0 if ids is None else ids.numel()
        header = torch.tensor([int(op), session, arg, count, flag], dtype=torch.int64)
        dist.broadcast(header, 0, group=self.group)
        if count:
            dist.broadcast(ids.to(device="cpu", dtype=torch.int64).contiguous(), 0, group=self.group)

    def receive(self) -> tuple[Op, int, int, torch.Tensor | None, int]:
        import torch.distributed as dist

        header = torch.empty(5, dtype=torch.int64)
        dist.broadcast(header, 0, group=self.group)
        op, session, arg, count, flag = header.tolist()
        ids = None
        if count:
            ids = torch.empty(count, dtype=torch.int64)
            dist.broadcast(ids, 0, group=self.group)
        return Op(op), session, arg, ids, flag


class DriverCache(KVCache):
    """Rank 0's cache of one session: creating, truncating, forking or dropping it tells the other ranks."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype, device: torch.device, channel: CommandChannel):
        super().__init__(config, dtype, device)
        self._attach(channel, channel.new_id())
        channel.send(Op.NEW, self.id)

    def _attach(self, channel: CommandChannel, session: int) -> None:
        self.channel, self.id = channel, session
        weakref.finalize(self, channel.release, session)

    def truncate(self, length: int) -> None:
        if max(0, length) < self.length:
            self.channel.send(Op.TRUNCATE, self.id, max(0, length))
        super().truncate(length)

    def fork(self) -> DriverCache:
        with self.channel.lock:
            session = self.channel.new_id()
            self.channel.send(Op.FORK, self.id, session)
            base = super().fork()
        other = object.__new__(DriverCache)
        other.__dict__.update(vars(base))
        other._attach(self.channel, session)
        return other


class Driver:
    """Rank 0's model: each forward is announced to the other ranks, then run here in step with them."""

    def __init__(self, model: Transformer, channel: CommandChannel):
        self.model, self.channel = model, channel

    def forward(self, ids: torch.Tensor, cache: KVCache, all_logits: bool = False) -> torch.Tensor:
        if not isinstance(cache, DriverCache):
            raise TypeError("a multi-GPU engine runs only caches made by its own sessions (engine.new_session())")
        with self.channel.lock:
            self.channel.send(Op.FORWARD, cache.id, ids=ids, flag=int(all_logits))
            return self.model.forward(ids, cache, all_logits)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class DriverGraph(DecodeGraph):
    """Rank 0's decode graph of one session: each step is announced, so the other ranks run theirs with it."""

    def __init__(self, model: Transformer, cache: DriverCache, pool: GraphPool, channel: CommandChannel):
        super().__init__(model, cache, pool)
        self.channel = channel

    def run(self, token: int, position: int) -> torch.Tensor:
        with self.channel.lock:
            self.channel.send(Op.DECODE, self.cache.id, position, ids=torch.tensor([token]))
            return super().run(token, position)


class DistEngine(Engine):
    """Rank 0 of a multi-GPU engine; used exactly like Engine. close() (also run at exit) stops the others."""

    def __init__(
        self,
        config: ModelConfig,
        model: Transformer,
        tokenizer: Tokenizer,
        path: Path | None,
        channel: CommandChannel,
        on_close: Callable[[], None] = lambda: None,
        cuda_graphs: bool = False,
    ):
        super().__init__(config, Driver(model, channel), tokenizer, path, cuda_graphs=cuda_graphs)
        self.parallel: ParallelContext = model.parallel
        self.channel, self._on_close = channel, on_close
        self.followers: list = []  # the other ranks' processes, when this process started them
        self.closed = False

    @property
    def gpus(self) -> int:
        return self.parallel.world

    def new_session(self) -> Session:
        return Session(self, DriverCache(self.config, self.model.dtype, self.device, self.channel))

    def _graph_model(self) -> Transformer:
        return self.model.model

    def _new_graph(self, model: Transformer, cache: KVCache, pool: GraphPool) -> DecodeGraph:
        return DriverGraph(model, cache, pool, self.channel)

    def weight_bytes(self) -> int:
        """Bytes of rank 0's share of the weights."""
        return Engine(self.config, self.model.model, self.tokenizer).weight_bytes()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.channel.send(Op.STOP)
        finally:
            self._on_close()


def follow(model: Transformer, channel: CommandChannel) -> None:
    """A follower rank's life after loading: run rank 0's commands on its own caches until STOP."""
    caches: dict[int, KVCache] = {}
    graphs = FollowerGraphs(model)
    with torch.inference_mode():
        while True:
            op, session, arg, ids, flag = channel.receive()
            if op is Op.STOP:
                return
            if op is Op.NEW:
                caches[session] = KVCache(model.config, model.dtype, model.device)
            elif op is Op.FORWARD:
                model.forward(ids, caches[session], bool(flag))
            elif op is Op.DECODE:
                graphs.decode(session, caches[session], int(ids[0]), arg)
            elif op is Op.TRUNCATE:
                caches[session].truncate(arg)
            elif op is Op.FORK:
                caches[arg] = caches[session].fork()
            elif op is Op.FREE:
                caches.pop(session, None)
                graphs.drop(session)


class FollowerGraphs:
    """A follower's decode graphs, one per session, made and replaced exactly when rank 0 makes its own: both
    see the same cache allocations, since every rank's cache grows with the same steps."""

    def __init__(self, model: Transformer):
        self.model = model
        self.by_session: dict[int, DecodeGraph] = {}
        self.pool: GraphPool | None = None

    def decode(self, session: int, cache: KVCache, token: int, position: int) -> None:
        cache.ensure(position + 1)
        graph = self.by_session.get(session)
        if graph is None or not graph.matches(cache):
            self.pool = self.pool or GraphPool(self.model.device)
            graph = self.by_session[session] = DecodeGraph(self.model, cache, self.pool)
        if graph.failed:  # this rank could not capture: run the step eagerly, its collectives pair up all the same
            self.model.forward(torch.tensor([token]), cache)
            return
        graph.run(token, position)
        cache.length = position + 1

    def drop(self, session: int) -> None:
        self.by_session.pop(session, None)  # its cache buffers go with it


def follow_or_exit(model: Transformer, channel: CommandChannel, rank: int) -> None:
    """follow(), but a failure ends the process at once: rank 0 then sees its peer gone instead of waiting."""
    import os

    try:
        follow(model, channel)
    except BaseException:
        print(f"dsagent engine rank {rank} failed:", file=sys.stderr)
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
