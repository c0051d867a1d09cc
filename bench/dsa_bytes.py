"""What DSA can save on a decode step, from bytes alone: one V3.2 MoE layer at context L and batch B (B sequences
of L tokens each, one new token each), at the copy rate, with dense attention against DSA.

Every step reads the layer's weights once (the routed experts the batch's tokens pick: with uniform routing,
E (1 - (1 - k/E)^B) of them) and, per sequence, either its whole latent cache (dense) or its indexer keys and
the top-k latent rows (DSA). The ratio of the two steps' bytes is what a kernel that streams at the copy rate
would give; the attention's own ratio, L x latent / (L x index key + top-k x latent), is its limit as B grows.
No GPU: arithmetic from the config. Writes bench/results/dsa-bytes.md (or --out DIR).

    python bench/dsa_bytes.py [--context 131072] [--target 6] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import sys
from dataclasses import dataclass
from pathlib import Path

from dsagent.model.config import config_from_dict
from dsagent.model.presets import preset_config, tensor_specs
from dsagent.model.sizing import loaded_bytes, size_model

BATCHES = (1, 2, 4, 8, 16, 64, 256, 1024, 4096)
COLUMNS = (
    "sequences",
    "weights MB",
    "dense attention MB",
    "DSA attention MB",
    "dense / DSA",
    "dense attention's share",
)


def layer_bytes(config) -> tuple[float, float]:
    """(bytes of one MoE layer's weights outside its routed experts, bytes of one routed expert), as loaded."""
    shared = expert = 0.0
    for spec in tensor_specs(config):
        if spec.name.startswith("model.layers.0."):
            size = loaded_bytes(spec, config)
            if spec.routed:
                expert += size / config.n_routed_experts
            else:
                shared += size
    return shared, expert


@dataclass(frozen=True)
class StepSizes:
    """What one layer's decode step reads, from the config once: weights outside the routed experts, one routed
    expert, and per cached token a latent row and an index key."""

    shared: float
    expert: float
    experts: int
    k: int
    latent: float
    index_key: float
    topk: int

    @classmethod
    def of(cls, config) -> StepSizes:
        shared, expert = layer_bytes(config)
        sizing = size_model(config)  # per token, over all layers: a bf16 latent row, an fp8 index key and its scale
        latent, index_key = (b / config.num_hidden_layers for b in (sizing.kv_latent_bytes, sizing.kv_index_bytes))
        experts, k = config.n_routed_experts, config.num_experts_per_tok
        return cls(shared, expert, experts, k, latent, index_key, config.index_topk)

    def step(self, context: int, batch: int) -> tuple[float, float, float]:
        """(weights read, dense attention bytes, DSA attention bytes) of one decode step of `batch` sequences."""
        weights = self.shared + self.expert * self.experts * (1 - (1 - self.k / self.experts) ** batch)
        dense = batch * context * self.latent
        dsa = batch * (context * self.index_key + min(self.topk, context) * self.latent)
        return weights, dense, dsa

    def ratio(self, context: int, batch: int) -> float:
        weights, dense, dsa = self.step(context, batch)
        return (weights + dense) / (weights + dsa)


def report(context: int, target: float) -> str:
    sizes = StepSizes.of(config_from_dict(preset_config("v32-layer", fp8=True)))
    rows = []
    for batch in BATCHES:
        weights, dense, dsa = sizes.step(context, batch)
        rows.append(
            f"| {batch} | {weights / 1e6:,.0f} | {dense / 1e6:,.0f} | {dsa / 1e6:,.0f} | "
            f"{sizes.ratio(context, batch):.2f}x | {dense / (weights + dense):.0%} |"
        )
    _, dense_one, dsa_one = sizes.step(context, 1)
    reach = next((b for b in range(1, 1 << 20) if sizes.ratio(context, b) >= target), None)
    where = (
        f"{reach} sequences ({reach * dense_one / 1e9:,.0f} GB of latent cache for this one layer)"
        if reach
        else "no batch size"
    )
    return "\n".join(
        [
            f"# DSA against dense attention on one V3.2 layer's decode step, by bytes (context {context})",
            "",
            f"- date: {datetime.date.today().isoformat()}",
            f"- command: `{' '.join(['python'] + sys.argv)}` (no GPU: arithmetic from the `v32-layer` config)",
            "- a step reads the layer's weights once (routed experts: those the batch picks, uniform routing) and, per"
            " sequence, its whole latent cache (dense) or its indexer keys and top-k latent rows (DSA); at one copy"
            " rate the steps' times are in the ratio of their bytes",
            "",
            "| " + " | ".join(COLUMNS) + " |",
            "|---" * len(COLUMNS) + "|",
            *rows,
            "",
            f"The attention alone: {dense_one / 1e6:.1f} MB against {dsa_one / 1e6:.1f} MB a sequence, "
            f"{dense_one / dsa_one:.2f}x, the limit as the batch grows. The step reaches {target:g}x at {where}.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--context", type=int, default=131072)
    parser.add_argument("--target", type=float, default=6.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    text = report(args.context, args.target)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dsa-bytes.md").write_text(text)


if __name__ == "__main__":
    main()
