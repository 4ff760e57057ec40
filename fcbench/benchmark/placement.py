"""Short summaries of where a model's nodes ran and in which precision, as the runtime reported it.

``"100 % XNNPACK"``, ``"62 % GPU / 38 % CPU"``; ``"bf16"`` (the precision of the compute ops). Shares are of the nodes
the runtime lists (a delegate partition counts as one node for ExecuTorch, whose delegated ops
are opaque to its runtime; TFLite lists every op). An empty list means the runtime cannot tell,
and the summary says so rather than guessing.
"""

from __future__ import annotations

import re
from collections import Counter

from fcbench.backends.base import NodePlacement

UNKNOWN = "not reported"
# the ops that carry the arithmetic; layout reorders and reshapes often stay f32 around a bf16 conv
_COMPUTE = re.compile(r"conv|matmul|gemm|fully.?connected|innerproduct|linear|dense", re.IGNORECASE)
_CONVERSION = re.compile(r"quantize", re.IGNORECASE)  # (De)QuantizeLinear convert, they do not compute


def _shares(counts: Counter, total: int) -> str:
    parts = counts.most_common()
    if len(parts) == 1:
        return f"100 % {parts[0][0]}"
    return " / ".join(f"{100 * n / total:.0f} % {name}" for name, n in parts)


def placement_summary(rows: list[NodePlacement]) -> str:
    if not rows:
        return UNKNOWN
    return _shares(Counter(r.placement or "?" for r in rows), len(rows))


def precision_summary(rows: list[NodePlacement]) -> str:
    """Precision of the compute ops (convolutions, matmuls, fully-connected) where the runtime
    lists any, else of every node that reports one."""
    known = [r.precision for r in rows
             if r.precision and _COMPUTE.search(r.op_type) and not _CONVERSION.search(r.op_type)]
    known = known or [r.precision for r in rows if r.precision]
    if not known:
        return UNKNOWN
    counts = Counter(known)
    if len(counts) == 1:
        return next(iter(counts))
    return " / ".join(f"{name} {100 * n / len(known):.0f} %" for name, n in counts.most_common())
