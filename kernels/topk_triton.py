"""Top-k of long score rows by radix selection (Triton), for the indexer's 2048 best of up to 128K keys.

Each fp32 score maps to an int32 key whose signed order is the float order. The k-th largest key is found
one 8-bit digit at a time from the top. A row is cut into P slices, one program each, that keep their keys
in registers for the whole selection: in round r every program histograms digit r of its keys whose higher
digits match those found so far, adds that into the row's histogram with atomics and waits at a barrier for
the row's other programs; then each reads the histogram and takes the digit at which the count from the top
reaches k. After four rounds the threshold key is known. Each program publishes how many of its keys lie above
it and how many equal it, meets the others at one more barrier, and sums the counts of the slices before its
own: that is where its keys go. So the output is the same on every run: the chosen positions in ascending order,
ties at the threshold going to the lowest positions. (Slots claimed with atomics come in arrival order, which
changes the order in which attention sums the rows, and with it the logits' last bits.) One launch, no host sync: it
runs in a CUDA graph. The scratch (histograms, barriers) is kept between calls and the last program to finish
zeroes it again, so no memset runs. `torch.topk` gives one thread block to a row, which leaves a 128K-key decode
row on one SM.

The barrier needs all P programs of a row running at once. Programs take their (row, slice) from a ticket
counter, so every program holding an earlier ticket is already running: the rows before a waiting program's
row are complete and can finish, and P is kept far below what the GPU holds at once.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, wait_for_inputs

# Triton's interpreter runs the programs one after another, so none may wait for another: one program a row.
_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"

SIGN = tl.constexpr(-2147483648)  # int32 0x80000000; a global must be constexpr to compile
BITS = 8  # digit width: a 256-bin histogram is cheap on chip (2048 bins measured 2-3x slower per round)
ROUNDS = 32 // BITS
MAX_PROGRAMS = 256  # per row: a block holds at least S / 256 keys
# scratch layout per row (int32): histograms [ROUNDS, 2^BITS], barriers [ROUNDS + 1] (the last before placing);
# after the rows: the ticket counter and the count of finished programs
ROW_SCRATCH = ROUNDS * (1 << BITS) + ROUNDS + 1
_WORKSPACES: dict[tuple[torch.device, int, str], torch.Tensor] = {}


@triton.jit
def _ordered_keys(scores):
    """fp32 -> int32 whose signed order is the float order (negative floats get their magnitude flipped)."""
    bits = scores.to(tl.int32, bitcast=True)
    return tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


@triton.jit
def _wait_for_row(bar_ptr, P):
    """Arrive at the row's barrier and wait until all P programs of the row have arrived. As in a grid-wide
    sync: the block barrier orders every thread's histogram atomics before the one acq_rel arrival. The wait
    polls with plain (volatile) loads, which do not queue behind the arrivals' atomics on the same address as
    polling atomics would; one acquiring atomic then orders the histogram reads after the arrivals, and the
    block barrier after it holds every thread until then."""
    tl.debug_barrier()
    arrived = tl.atomic_add(bar_ptr, 1) + 1
    while arrived < P:
        arrived = tl.load(bar_ptr, volatile=True)
    tl.atomic_add(bar_ptr, 0, sem="acquire")
    tl.debug_barrier()


@triton.jit
def _count_digits(hist_ptr, ukeys, keep, SHIFT: tl.constexpr, BITS: tl.constexpr, N: tl.constexpr):
    """hist[d] += how many of the N kept keys have digit d at bit SHIFT (atomics: many programs add in)."""
    BINS: tl.constexpr = 1 << BITS
    bins = tl.arange(0, BINS)
    counts = tl.histogram(tl.where(keep, (ukeys >> SHIFT) & (BINS - 1), 0), BINS)
    counts -= tl.where(bins == 0, N - tl.sum(keep.to(tl.int32), axis=0), 0)  # the dropped keys went to bin 0
    tl.atomic_add(hist_ptr + bins, counts, mask=counts > 0, sem="relaxed")  # ordered by the barrier's arrival


@triton.jit
def _radix_select_kernel(
    s_ptr, scratch_ptr, counts_ptr, o_ptr, S, k, P, SCRATCH, stride_s, stride_o,
    BITS: tl.constexpr, ROUNDS: tl.constexpr, ROW_SCRATCH: tl.constexpr, BLOCK: tl.constexpr,
    MAX_PROGRAMS: tl.constexpr, FIRST_DONE: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    # scores [T, S] fp32 -> o [T, k] int32: the positions taken, ascending (-1 for a -inf score).
    # FIRST_DONE: the kernel that wrote the scores has already counted the first digits (the row's hist 0).
    BINS: tl.constexpr = 1 << BITS
    wait_for_inputs(PDL)
    ticket_ptr = scratch_ptr + SCRATCH - 2  # SCRATCH: the whole scratch's length (rows, then the two counters)
    ticket = tl.atomic_add(ticket_ptr, 1)
    row = ticket // P
    part = ticket % P  # the row's slice this program holds
    offs = part * BLOCK + tl.arange(0, BLOCK)
    valid = offs < S
    scores = tl.load(s_ptr + row.to(tl.int64) * stride_s + offs, mask=valid, other=float("-inf"))
    keys = _ordered_keys(scores)
    ukeys = keys ^ SIGN  # unsigned order: digits read straight off the bits
    bins = tl.arange(0, BINS)
    scratch = scratch_ptr + row * ROW_SCRATCH
    prefix = tl.zeros((), tl.int32)  # digits of the k-th largest key found so far, at their bit positions
    need = k  # keys sharing that prefix still to be taken
    cut = tl.zeros((), tl.int32)  # keys are compared on their bits from `cut` up
    done = tl.zeros((), tl.int32)  # 1 once every key sharing the prefix is needed: no more digits to find
    for r in tl.static_range(ROUNDS):
        if done == 0:  # the same for every program of the row: all read the same histograms
            hist = scratch + r * BINS
            if r > 0 or not FIRST_DONE:
                keep = valid
                if r > 0:  # arithmetic shifts fill with the sign bit, which only ever meets a nonzero difference
                    keep = keep & (((ukeys ^ prefix) >> (32 - BITS * r)) == 0)
                _count_digits(hist, ukeys, keep, 32 - BITS * (r + 1), BITS, BLOCK)
                _wait_for_row(scratch + ROUNDS * BINS + r, P)
            h = tl.load(hist + bins, volatile=True)
            # keys with a digit >= d among the matching ones: total - (cumsum up to d) + count at d
            from_top = tl.sum(h, axis=0) - tl.cumsum(h, axis=0) + h
            best = tl.max(tl.where(from_top >= need, bins, 0), axis=0)
            need -= tl.sum(tl.where(bins > best, h, 0), axis=0)
            prefix |= best << (32 - BITS * (r + 1))
            cut = tl.full((), 32 - BITS * (r + 1), tl.int32)
            done = (need == tl.sum(tl.where(bins == best, h, 0), axis=0)).to(tl.int32)
    # arithmetic shifts keep the signed order: compare the bits found so far
    threshold = (prefix ^ SIGN) >> cut
    keys = keys >> cut
    value = tl.where(scores == float("-inf"), -1, offs)  # a masked key is reported as -1
    o_row = o_ptr + row.to(tl.int64) * stride_o
    above = valid & (keys > threshold)
    equal = (valid & (keys == threshold)).to(tl.int32)
    # counts [T, 2, MAX_PROGRAMS]: every program writes its own entries each call, so they need no zeroing
    counts = counts_ptr + row * 2 * MAX_PROGRAMS
    tl.store(counts + part, tl.sum(above.to(tl.int32), axis=0))
    tl.store(counts + MAX_PROGRAMS + part, tl.sum(equal, axis=0))
    _wait_for_row(scratch + ROUNDS * BINS + ROUNDS, P)
    # every key above is taken and the first `need` equal ones: slice i takes above_i + its share of those
    parts = tl.arange(0, MAX_PROGRAMS)
    above_n = tl.load(counts + parts, mask=parts < P, other=0, volatile=True)
    equal_n = tl.load(counts + MAX_PROGRAMS + parts, mask=parts < P, other=0, volatile=True)
    equal_before = tl.cumsum(equal_n, axis=0) - equal_n
    taken_n = above_n + tl.minimum(tl.maximum(need - equal_before, 0), equal_n)
    base = tl.sum(tl.where(parts < part, taken_n, 0), axis=0)
    ties_before = tl.sum(tl.where(parts < part, equal_n, 0), axis=0)
    take = above | ((equal > 0) & (ties_before + tl.cumsum(equal, axis=0) <= need))
    tl.store(o_row + base + tl.cumsum(take.to(tl.int32), axis=0) - 1, value, mask=take)
    # the last program to finish (every other one is past its last scratch access) zeroes the scratch
    tl.debug_barrier()
    if tl.atomic_add(ticket_ptr + 1, 1) == tl.num_programs(0) - 1:
        for i in range(0, SCRATCH, BLOCK):
            tl.store(scratch_ptr + i + tl.arange(0, BLOCK), 0, mask=i + tl.arange(0, BLOCK) < SCRATCH)


def radix_scratch(rows: int, device) -> torch.Tensor:
    """The zeroed scratch of topk_triton over `rows` rows, into which a scores kernel may count the first digits.
    One buffer per (device, rows), kept between calls: every select leaves it zeroed, so calls that share it
    must run one after another (one stream, as a decode step does)."""
    return _workspace(torch.device(device), rows, "scratch", rows * ROW_SCRATCH + 2)


def _workspace(device: torch.device, rows: int, name: str, size: int) -> torch.Tensor:
    key = (device, rows, name)
    if key not in _WORKSPACES:
        _WORKSPACES[key] = torch.zeros(size, dtype=torch.int32, device=device)
    return _WORKSPACES[key]


def topk_triton(scores: torch.Tensor, k: int, block: int = 1024, out=None, scratch=None) -> torch.Tensor:
    """scores [T, S] fp32 -> [T, k] int32 positions of each row's k largest scores in ascending order, ties
    at the k-th largest going to the lowest positions; -1 in place of a -inf score's position and, when S < k,
    for the missing tail. Floats are ordered by their bits, so -0.0 < 0.0. `block`: keys per program (a power of 2).
    `scratch`: the radix_scratch(T) into which the kernel that wrote `scores` counted the first digits."""
    T, S = scores.shape
    assert scores.dtype == torch.float32 and scores.stride(-1) == 1, (scores.dtype, scores.stride())
    if out is None:
        out = torch.empty((T, k), dtype=torch.int32, device=scores.device)
    assert out.shape == (T, k) and out.dtype == torch.int32 and out.stride(-1) == 1, (out.shape, out.dtype)
    if T == 0 or k == 0:
        return out
    if S <= k:  # every key is taken
        pos = torch.arange(S, dtype=torch.int32, device=scores.device).expand(T, S)
        out[:, :S] = torch.where(scores == float("-inf"), -1, pos)
        out[:, S:] = -1
        return out
    block = max(block, triton.next_power_of_2(triton.cdiv(S, MAX_PROGRAMS)), 1 << BITS)
    if _INTERPRETED:
        block = triton.next_power_of_2(S)
    per_row = triton.cdiv(S, block)  # at most 256 programs wait at a row's barrier: far below what one GPU holds
    first_done = scratch is not None
    if scratch is None:
        scratch = radix_scratch(T, scores.device)
    assert scratch.shape == (T * ROW_SCRATCH + 2,) and scratch.dtype == torch.int32, (scratch.shape, T)
    assert per_row <= MAX_PROGRAMS, (S, block)
    counts = _workspace(scores.device, T, "counts", T * 2 * MAX_PROGRAMS)
    _radix_select_kernel[(per_row * T,)](
        scores, scratch, counts, out, S, k, per_row, scratch.numel(), scores.stride(0), out.stride(0),
        BITS=BITS, ROUNDS=ROUNDS, ROW_SCRATCH=ROW_SCRATCH, BLOCK=block, MAX_PROGRAMS=MAX_PROGRAMS,
        FIRST_DONE=first_done,
        num_warps=4 if block <= 2048 else 8, **pdl_args(scores.device),
    )  # fmt: skip
    return out
