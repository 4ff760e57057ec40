"""ExecuTorch artifacts: ``torch.export`` -> edge dialect -> (XNNPACK) lowering -> ``.pte``.

Option ``delegate``: ``xnnpack`` (default) partitions every subgraph XNNPACK supports into
delegate blobs; ``none`` keeps every op on ExecuTorch's CPU kernels (portable). The counts of
ops delegated vs left to the CPU kernels are read from the lowered edge program at export
time and kept in the manifest (``extra``): the runtime only sees opaque delegate blobs.
"""

from __future__ import annotations

import contextlib
import operator
import os
import re
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported when an export runs: checking options stays light
    import torch

from fcbench.conversion.base import Exporter, ExportResult
from fcbench.errors import FcbenchError, first_line
from fcbench.options import OptionSpec, exporter_options
from fcbench.results.context import package_version

DELEGATES = ("xnnpack", "none")
# what ``--opt pte.KEY=VALUE`` takes (plain data, checked without importing torch or ExecuTorch)
PTE_OPTIONS = {"delegate": OptionSpec(str, "xnnpack", "xnnpack, or none (portable kernels)", choices=DELEGATES)}
# the backend variant that runs each kind of .pte
VARIANT_OF = {"xnnpack": "xnnpack", "none": "portable"}

_OP_PATTERNS = (  # (pattern naming the op, what to say about it)
    (re.compile(r"Operator torch\._ops\.([\w.]+) is not in Core ATen opset"), "not in the Core ATen opset"),
    (re.compile(r"[Mm]issing out variants?: \{?'?([\w.:]+)"), "no out variant / kernel"),
    (re.compile(r"([\w]+::[\w.]+)[^\n]*not (?:found|supported|registered)"), "no kernel"),
)


def _conversion_error(stage: str, exc: BaseException) -> FcbenchError:
    text = str(exc)
    for pattern, why in _OP_PATTERNS:
        m = pattern.search(text)
        if m:
            return FcbenchError(f"pte: {stage} failed, unsupported op {m.group(1).rstrip('.')} ({why})", exit_code=1)
    return FcbenchError(f"pte: {stage} failed: {type(exc).__name__}: {first_line(exc)[:300]}", exit_code=1)


def _op_name(node: torch.fx.Node) -> str:
    import torch

    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return str(target)  # aten.convolution.default
    return getattr(target, "__name__", str(target))  # EdgeOpOverload.__name__ is aten.convolution.default


def delegation_info(edge_graph: torch.fx.GraphModule) -> dict[str, Any]:
    """Ops of the lowered edge program: how many went into delegate blobs (by backend) and how
    many are left to ExecuTorch's CPU kernels, by op type. ``getitem`` nodes are not ops."""
    delegated: Counter[str] = Counter()
    portable: Counter[str] = Counter()
    backends: Counter[str] = Counter()
    partitions = 0
    for node in edge_graph.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module"):
            lowered = getattr(edge_graph, node.target)
            partitions += 1
            n = 0
            for inner in lowered.original_module.graph_module.graph.nodes:
                if inner.op == "call_function" and inner.target is not operator.getitem:
                    delegated[_op_name(inner)] += 1
                    n += 1
            backends[lowered.backend_id] += n
        elif node.op == "call_function":
            if node.target is operator.getitem or "executorch_call_delegate" in str(node.target):
                continue
            portable[_op_name(node)] += 1
    return {
        "ops_delegated": sum(delegated.values()),
        "ops_portable": sum(portable.values()),
        "delegate_partitions": partitions,
        "delegated_ops_by_backend": dict(backends),
        "delegated_ops": dict(sorted(delegated.items())),
        "portable_ops": dict(sorted(portable.items())),
    }


class PteExporter(Exporter):
    """PyTorch -> ``.pte``.

    Options: ``delegate`` ("xnnpack" (default) or "none": portable CPU kernels only).
    """

    format = "pte"
    module = "executorch"
    install_hint = "pip install 'fcbench[executorch]'"
    options = PTE_OPTIONS

    def export(self, model: torch.nn.Module, example: torch.Tensor, out: Path, options: dict[str, Any]) -> ExportResult:
        import torch

        delegate = exporter_options("pte", PTE_OPTIONS, options)["delegate"]
        try:
            import executorch.exir  # noqa: F401  (a clear message before any work)
        except ImportError as exc:
            raise FcbenchError(f"pte: executorch cannot be imported ({exc}); install it with: {self.install_hint}",
                               exit_code=1) from exc
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        model = model.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                with torch.no_grad():
                    exported = torch.export.export(model, (example.float(),))
            except Exception as exc:
                raise _conversion_error("torch.export", exc) from exc
        return lower_to_pte(exported, delegate, out)


def lower_to_pte(exported: Any, delegate: str, out: Path) -> ExportResult:
    """An exported program (``torch.export``) lowered to ExecuTorch (XNNPACK delegate or portable
    kernels) and written atomically at ``out``; quantize's ``executorch-int8`` lowers through it too."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        partitioners = []
        if delegate == "xnnpack":
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

            partitioners = [XnnpackPartitioner()]
        try:
            from executorch.exir import to_edge_transform_and_lower

            edge = to_edge_transform_and_lower(exported, partitioner=partitioners)
            info = delegation_info(edge.exported_program().graph_module)
            program = edge.to_executorch()
        except Exception as exc:
            raise _conversion_error("lowering to ExecuTorch", exc) from exc
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            program.write_to_file(f)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return ExportResult(
        file=out, input_layout="NCHW",
        options={"delegate": delegate, "executorch": package_version("executorch") or "unknown",
                 "torch": torch.__version__},
        extra={"pte_delegate": delegate, "backend_variant": VARIANT_OF[delegate], **info},
    )
