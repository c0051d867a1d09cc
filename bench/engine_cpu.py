"""CPU engine benchmark: load time, peak RSS while loading an fp8 `small` checkpoint, prefill and decode speed.

    python bench/engine_cpu.py [--checkpoint DIR] [--prompt-tokens 256] [--decode-tokens 16]
        [--write bench/results/engine-cpu.md]

Each measurement runs in a fresh Python process, so the peak RSS (VmHWM) is that of loading alone; the
baseline is the RSS after importing torch and the engine, before the checkpoint is opened.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(checkpoint: str, prompt_tokens: int, decode_tokens: int, threads: int) -> dict:
    """Runs inside the child process."""
    import torch
    from dsagent.model.engine import Engine

    if threads:
        torch.set_num_threads(threads)

    baseline = _status_mib("VmRSS")
    started = time.perf_counter()
    engine = Engine.from_pretrained(checkpoint, progress=False)
    load_s = time.perf_counter() - started
    peak_load = _status_mib("VmHWM")
    ids = torch.randint(3, engine.config.vocab_size, (prompt_tokens,), generator=torch.Generator().manual_seed(0))
    session = engine.new_session()
    started = time.perf_counter()
    session.append(ids.tolist())
    prefill_s = time.perf_counter() - started
    session.append([5])  # first decode step touches every weight page once; not timed
    started = time.perf_counter()
    for token in range(decode_tokens):
        session.append([100 + token])
    decode_s = time.perf_counter() - started
    return {
        "baseline_mib": baseline,
        "peak_load_mib": peak_load,
        "rss_after_decode_mib": _status_mib("VmRSS"),
        "load_s": load_s,
        "prefill_tok_s": prompt_tokens / prefill_s,
        "decode_tok_s": decode_tokens / decode_s,
        "weight_mib": engine.weight_bytes() / 2**20,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
    }


def run_child(checkpoint: Path, args: argparse.Namespace, threads: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(checkpoint),
        "--threads",
        str(threads),
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--decode-tokens",
        str(args.decode_tokens),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(rows: list[tuple[str, float, dict]], args: argparse.Namespace, command: str) -> str:
    cpu = platform.processor() or platform.machine()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        cpu,
    )
    lines = [
        "# CPU engine benchmark",
        "",
        f"- date: {date.today().isoformat()}",
        f"- machine: 2-core CPU ({model}, {os.cpu_count()} logical CPUs visible), torch "
        f"{__import__('torch').__version__}",
        f"- command: `{command}`",
        f"- prompt {args.prompt_tokens} tokens (one prefill call), then {args.decode_tokens} one-token decode "
        "steps after one untimed warm-up step; random token ids; each row in a fresh process.",
        "",
        "| checkpoint | size on disk | load s | RSS before load | peak RSS while loading | peak / size | "
        "(peak - before) / size | RSS after decode | prefill tok/s | decode tok/s | torch threads | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, disk_mib, r in rows:
        lines.append(
            f"| {name} | {disk_mib:.0f} MiB | {r['load_s']:.2f} | {r['baseline_mib']:.0f} MiB | "
            f"{r['peak_load_mib']:.0f} MiB | {r['peak_load_mib'] / disk_mib:.2f} | "
            f"{(r['peak_load_mib'] - r['baseline_mib']) / disk_mib:.2f} | {r['rss_after_decode_mib']:.0f} MiB | "
            f"{r['prefill_tok_s']:.1f} | {r['decode_tok_s']:.2f} | {r['threads']} | {r['load_average']:.1f} |"
        )
    lines += [
        "",
        "Target: peak RSS while loading under 1.2x the checkpoint's size on disk. Weights that keep their "
        "stored dtype (fp8 blocks, bf16 embeddings and head) stay memory-mapped, so their pages become "
        "resident when first used (see RSS after decode) rather than while loading; routed experts are "
        "copied once into stacked tensors and norms, gate and indexer weights_proj are converted to fp32.",
        "The CPU path dequantises fp8 weights block-row by block-row for every call (a table lookup per "
        "value), so decode is bound by that conversion and by the fp32 LM head; `load avg` is the machine's "
        "1-minute load when the row finished (other work on the same 2 cores slows the 2-thread rows most).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help="fp8 small checkpoint to reuse (made if missing)")
    parser.add_argument("--bf16", action="store_true", help="also measure a bf16 small checkpoint")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--decode-tokens", type=int, default=16)
    parser.add_argument("--threads", default="1,2", help="torch thread counts to measure, comma-separated")
    parser.add_argument("--write", type=Path, help="write the markdown table here")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.prompt_tokens, args.decode_tokens, int(args.threads))))
        return
    from dsagent.model.writer import init_checkpoint

    command = "python bench/engine_cpu.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        variants = [("small fp8", args.checkpoint or Path(tmp) / "small-fp8", True)]
        if args.bf16:
            variants.append(("small bf16", Path(tmp) / "small-bf16", False))
        rows = []
        for name, folder, fp8 in variants:
            if not (folder / "config.json").is_file():
                started = time.perf_counter()
                init_checkpoint("small", folder, fp8=fp8, seed=0)
                print(f"made {name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            disk = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20
            for threads in (int(t) for t in args.threads.split(",")):
                rows.append((name, disk, run_child(folder, args, threads)))
                print(json.dumps(rows[-1][2]), file=sys.stderr)
    text = table(rows, args, command)
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
