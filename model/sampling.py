"""Choosing the next token from fp32 logits: greedy, or temperature + top-k + top-p with a seeded generator."""

from __future__ import annotations

import torch
from pydantic import BaseModel, Field


class SamplingParams(BaseModel):
    temperature: float = Field(0.0, ge=0.0, description="0 means greedy (arg-max)")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="keep the smallest set of tokens with this mass")
    top_k: int = Field(0, ge=0, description="keep the k most likely tokens; 0 keeps all")
    seed: int | None = Field(None, description="seed for reproducible sampling")


class Sampler:
    def __init__(self, params: SamplingParams):
        self.params = params
        self.generator = torch.Generator()
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()

    def __call__(self, logits: torch.Tensor) -> int:
        p = self.params
        logits = logits.float().cpu()
        if p.temperature == 0.0:
            return int(logits.argmax())
        logits = logits / p.temperature
        if p.top_k and p.top_k < logits.numel():
            kth = logits.topk(p.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(dim=-1)
        if p.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            # Drop a token when the mass before it already reaches top_p (the first one always stays).
            drop = sorted_probs.cumsum(0) - sorted_probs >= p.top_p
            probs = probs.scatter(0, order, sorted_probs.masked_fill(drop, 0.0))
        return int(torch.multinomial(probs, 1, generator=self.generator))
