"""Starting the ranks of a multi-GPU engine on one host.

`launch(path, gpus)` makes this process rank 0 (it keeps the Engine/Session API) and starts gpus - 1 follower
processes; each rank loads only its slices of the checkpoint. `run_ranks(fn, world)` runs fn on every rank
(tests and benchmarks that drive all ranks the same way). CUDA ranks talk over NCCL, one GPU each; CPU ranks
over gloo (for testing without GPUs). NVLink multicast (NVLS) stays off: NCCL_NVLS_ENABLE=0 unless set.
"""

from __future__ import annotations

import atexit
import datetime
import os
import pickle
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from dsagent.model.config import ConfigError, ForwardOptions, load_config

# Followers wait for the next command as long as rank 0 is idle; model collectives get a generous bound.
_COMMAND_TIMEOUT = datetime.timedelta(days=3650)
_STEP_TIMEOUT = datetime.timedelta(minutes=30)
_START_TIMEOUT = 3600.0  # seconds for the other ranks to load their shards after rank 0 has (large models)


def nccl_defaults() -> None:
    """Environment every rank needs before its process group starts: no NVLink multicast; gloo (commands,
    and CPU ranks) over loopback, since all ranks share one host (the host name may not resolve)."""
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")


@dataclass(frozen=True)
class RankSpec:
    rank: int
    world: int
    address: str  # tcp://host:port of the rendezvous
    device: str  # "cpu" or "cuda"
    threads: int  # CPU threads per rank (CPU ranks share the machine's cores)

    @property
    def backend(self) -> str:
        return "nccl" if self.device == "cuda" else "gloo"

    def torch_device(self) -> torch.device:
        return torch.device("cuda", self.rank) if self.device == "cuda" else torch.device("cpu")


def _join(spec: RankSpec):
    """Join the process group; returns (ParallelContext, command channel)."""
    import torch.distributed as dist
    from dsagent.model.dist_engine import CommandChannel
    from dsagent.model.parallel import ParallelContext

    if spec.device == "cuda":
        torch.cuda.set_device(spec.rank)
    else:
        torch.set_num_threads(spec.threads)
    dist.init_process_group(
        spec.backend, init_method=spec.address, rank=spec.rank, world_size=spec.world, timeout=_STEP_TIMEOUT
    )
    commands = dist.new_group(backend="gloo", timeout=_COMMAND_TIMEOUT)
    return ParallelContext(spec.rank, spec.world), CommandChannel(commands)


def _load(spec: RankSpec, path: Path, dtype: torch.dtype, options: ForwardOptions, parallel):
    from dsagent.model.weights import load_transformer

    return load_transformer(load_config(path), path, spec.torch_device(), dtype, options, False, parallel)


def _follower(spec: RankSpec, path: Path, dtype: torch.dtype, options: ForwardOptions, conn) -> None:
    from dsagent.model.dist_engine import follow_or_exit

    nccl_defaults()
    parallel, channel = _join(spec)
    try:
        model = _load(spec, path, dtype, options, parallel)
    except Exception as exc:  # reported to rank 0, which stops everyone with this message
        conn.send(f"rank {spec.rank}: {exc}")
        return
    conn.send(None)
    follow_or_exit(model, channel, spec.rank)
    import torch.distributed as dist

    dist.destroy_process_group()


def _check_devices(device: str, world: int) -> None:
    if world < 2:
        raise ConfigError(f"a multi-GPU engine needs at least 2 ranks, got {world}")
    if device == "cuda":
        have = torch.cuda.device_count()
        if have < world:
            raise ConfigError(f"--gpus {world} needs {world} CUDA GPUs; this machine has {have}")


def _device_kind(device: str | torch.device) -> str:
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"multi-GPU runs on cuda (NCCL) or cpu (gloo), not {kind}")
    return kind


def _specs(device: str, world: int) -> list[RankSpec]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // world)
    return [RankSpec(r, world, f"tcp://127.0.0.1:{port}", device, threads) for r in range(world)]


def _context():
    import multiprocessing

    # forkserver: children fork from a clean server that has imported torch once (fast, and CUDA-safe)
    from dsagent.multiproc import start_helpers

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "dsagent.model.launcher"])
    start_helpers(ctx)  # on the real stderr, even when launched from the TUI
    return ctx


def launch(
    path: str | Path,
    gpus: int,
    device: str | torch.device = "cuda",
    dtype: torch.dtype | None = None,
    options: ForwardOptions | None = None,
    cuda_graphs: bool = False,
):
    """Load the checkpoint split over `gpus` ranks; this process becomes rank 0 -> a DistEngine.

    cuda_graphs: decode (one-token appends) by replaying a CUDA graph of the step on every rank (CUDA only).
    Off by default for now: a one-layer step replays in 0.74 ms against ~8 ms eager on 2 H200s
    (bench/results/multigpu-h200.md), but an engine that decoded this way hung at close() until the ranks'
    communicator teardown was made concurrent, and that fix has not yet run on GPUs."""
    from dsagent.model.dist_engine import DistEngine
    from dsagent.model.engine import _DTYPES
    from dsagent.model.shard import ShardPlan
    from dsagent.model.tokenizer import Tokenizer

    started = time.perf_counter()
    path, kind = Path(path).expanduser(), _device_kind(device)
    config = load_config(path)
    _check_devices(kind, gpus)
    ShardPlan(config, 0, gpus)  # a model that cannot be split fails here, before any process starts
    if _joined():
        raise ConfigError("this process already runs a multi-GPU engine; close() it before launching another")
    dtype = dtype or _DTYPES.get(config.torch_dtype, torch.bfloat16)
    options = options or ForwardOptions()
    nccl_defaults()
    specs, mp = _specs(kind, gpus), _context()
    pipes, procs = [], []
    for spec in specs[1:]:
        parent, child = mp.Pipe(duplex=False)
        proc = mp.Process(target=_follower, args=(spec, path, dtype, options, child), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    threads = torch.get_num_threads()
    try:
        parallel, channel = _join(specs[0])
        model = _load(specs[0], path, dtype, options, parallel)
        _wait_ready(pipes, procs)
    except BaseException:
        _stop(procs)
        _leave()
        torch.set_num_threads(threads)
        raise

    def shutdown() -> None:
        atexit.unregister(engine.close)
        # Every rank tears its communicators down at once: after collectives captured in CUDA graphs, NCCL's
        # teardown waits for all ranks, so rank 0 must not wait for the others to exit before starting its own.
        leaving = threading.Thread(target=_leave, name="dsagent-nccl-teardown", daemon=True)
        leaving.start()
        _stop(procs, grace=30.0)
        leaving.join(timeout=10.0)
        torch.set_num_threads(threads)

    graphs = cuda_graphs and kind == "cuda"
    tokenizer = Tokenizer.from_checkpoint(path, config.vocab_size)
    engine = DistEngine(config, model, tokenizer, path, channel, shutdown, cuda_graphs=graphs)
    engine.followers = procs
    engine.load_seconds = time.perf_counter() - started
    atexit.register(engine.close)
    return engine


def _wait_ready(pipes: list, procs: list) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    for conn, proc in zip(pipes, procs, strict=True):
        while not conn.poll(0.2):
            if not proc.is_alive():
                raise ConfigError(f"an engine rank exited while loading (exit code {proc.exitcode}); see its stderr")
            if time.monotonic() > deadline:
                raise ConfigError(f"engine ranks did not finish loading within {_START_TIMEOUT:.0f} s")
        error = conn.recv()
        if error is not None:
            raise ConfigError(f"loading the checkpoint failed on {error}")


def _stop(procs: list, grace: float = 0.0) -> None:
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.terminate()
            proc.join(5.0)


def _joined() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _leave() -> None:
    import torch.distributed as dist

    if _joined():
        dist.destroy_process_group()


@dataclass(frozen=True)
class _FunctionRef:
    """A module-level function by module name and file: found again in a child process even when its module
    is not importable there (a script, or a test module imported by path)."""

    module: str
    file: str
    name: str

    @classmethod
    def of(cls, fn) -> _FunctionRef:
        import inspect

        return cls(fn.__module__, inspect.getfile(fn), fn.__qualname__)

    def resolve(self):
        import importlib
        import importlib.util

        try:
            return getattr(importlib.import_module(self.module), self.name)
        except (ImportError, AttributeError):
            spec = importlib.util.spec_from_file_location(f"_dsagent_rank_{Path(self.file).stem}", self.file)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return getattr(module, self.name)


def _rank_main(spec: RankSpec, ref: _FunctionRef, args: tuple, conn) -> None:
    nccl_defaults()
    try:
        parallel, _ = _join(spec)
        result = ref.resolve()(parallel, spec.torch_device(), *args)
        # plain pickle: tensors travel by value (multiprocessing's own pickler would pass shared-memory
        # handles that die with this process)
        conn.send_bytes(pickle.dumps((True, result)))
    except BaseException as exc:
        import traceback

        conn.send_bytes(
            pickle.dumps((False, f"rank {spec.rank}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        )
    finally:
        _leave()


def run_ranks(fn, world: int, device: str = "cpu", *args: Any, timeout: float = 600.0) -> list[Any]:
    """Run fn(parallel_context, torch_device, *args) on `world` new processes, one per rank -> their results.

    fn must be a module-level function; its arguments and results travel pickled."""
    kind = _device_kind(device)
    if kind == "cuda" and torch.cuda.device_count() < world:
        raise ConfigError(f"{world} ranks need {world} CUDA GPUs; this machine has {torch.cuda.device_count()}")
    nccl_defaults()
    mp = _context()
    pipes, procs = [], []
    for spec in _specs(kind, world):
        parent, child = mp.Pipe(duplex=False)
        proc = mp.Process(target=_rank_main, args=(spec, _FunctionRef.of(fn), args, child), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    try:
        results = []
        deadline = time.monotonic() + timeout
        for conn, proc in zip(pipes, procs, strict=True):
            while not conn.poll(0.2):
                if not proc.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"rank process {proc.pid} exited or timed out (exit code {proc.exitcode})")
            ok, value = pickle.loads(conn.recv_bytes())
            if not ok:
                raise RuntimeError(value)
            results.append(value)
        return results
    finally:
        _stop(procs, grace=10.0)
