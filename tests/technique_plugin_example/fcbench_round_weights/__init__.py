"""A third-party fcbench technique: round every floating-point weight to ``decimals`` decimals.

Trivial on purpose (a crude stand-in for weight quantization that keeps float arithmetic), but
real: the weights change, the model still runs, and the lineage says what was done.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fcbench.techniques.base import Technique


class RoundWeights(Technique):
    name = "round-weights"
    verb = "compress"

    @dataclass
    class Options:
        decimals: int = 2

        def __post_init__(self) -> None:
            if self.decimals < 0:
                raise ValueError(f"decimals must be >= 0, got {self.decimals}")

    def apply(self, checkpoint, options, context):
        model = checkpoint.build_model()
        with torch.no_grad():
            for p in model.parameters():
                if p.is_floating_point():
                    p.copy_(torch.round(p, decimals=options.decimals))
        context.report(f"rounded to {options.decimals} decimals", 1.0)
        return checkpoint.with_model(model)
