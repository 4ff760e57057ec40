"""Conversion preflight: every op of a model that a target format will not take, before converting.

The model is captured once with ``torch.export``; then, per format, the graph is decomposed the
way that format's converter decomposes it and each op is looked up in the converter's own
table of what it can lower:

- ``onnx``: torch.onnx's dynamo exporter: its ONNX-friendly decompositions, then its dispatcher
  against the torchlib registry (the same lookup ``torch.onnx.export`` does).
- ``tflite``: litert-torch: its pre-convert decompositions, then its lowering registry.
- ``pte``: ExecuTorch: ops left after the core-ATen decompositions must be core ATen ops
  (EXIR's verifier refuses the rest).
- ``openvino``: OpenVINO's PyTorch frontend: its operator-support table for FX graphs.
- ``ptl``: TorchScript tracing records any op that runs, so there is no op-level check.

These are the converters' internal tables, so a check can be unavailable with another version
of a converter; it then says so instead of guessing. Nothing is written.
"""

from __future__ import annotations

import contextlib
import io
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from fcbench.errors import FcbenchError, first_line


@dataclass
class Blocker:
    op: str  # the op as captured from the model, e.g. "aten::special_i0"
    module: str  # where in the PyTorch model the op comes from, e.g. "layer1.0.conv1"
    count: int = 1
    lowered: str = ""  # what the format's decompositions turned it into, when that differs

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "module": self.module, "count": self.count, "lowered": self.lowered}


@dataclass
class FormatCheck:
    format: str
    status: str  # ok | blocked | unchecked
    blockers: list[Blocker] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "status": self.status, "note": self.note,
                "blockers": [b.to_dict() for b in self.blockers]}


_IGNORED = {operator.getitem}


def _module_path(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "(forward)"
    path = list(stack.values())[-1][0]
    return path.replace("L['self'].", "").replace("L__self___", "") or "(forward)"


def _op_name(target: Any) -> str:
    name = getattr(target, "name", None)
    if callable(name):
        try:
            return str(name())
        except TypeError:
            pass
    return str(getattr(target, "__name__", target))


def _source_op(node: torch.fx.Node) -> str:
    """The op as the model's captured graph had it, before a format's decompositions."""
    origin = (node.meta.get("from_node") or [None])[0]
    while origin is not None and getattr(origin, "from_node", None):  # back to the captured graph
        origin = origin.from_node[0]
    target = getattr(origin, "target", None) if origin is not None else None
    if isinstance(target, str) and target.count(".") >= 1:  # "aten.special_i0.default"
        ns, name = target.split(".")[:2]
        return f"{ns}::{name}"
    return _op_name(target) if target is not None else _op_name(node.target)


def _collect(graph: torch.fx.Graph, refused: Callable[[torch.fx.Node], bool]) -> list[Blocker]:
    found: dict[tuple[str, str], Blocker] = {}
    for node in graph.nodes:
        if node.op != "call_function" or node.target in _IGNORED:
            continue
        if refused(node):
            key = (_source_op(node), _module_path(node))
            if key in found:
                found[key].count += 1
            else:
                lowered = _op_name(node.target)
                found[key] = Blocker(*key, lowered="" if lowered == key[0] else lowered)
    return list(found.values())


def _check_onnx(ep: torch.export.ExportedProgram) -> list[Blocker]:
    from torch.onnx._internal.exporter import _decomp, _dispatching, _registration

    registry = _registration.ONNXRegistry.from_torchlib()
    table = _decomp.create_onnx_friendly_decomposition_table(set(_decomp.get_onnx_implemented_overloads(registry)))
    ep = ep.run_decompositions(table)

    def refused(node: torch.fx.Node) -> bool:
        try:
            fn, _ = _dispatching.dispatch(node, registry)
        except Exception:  # the dispatcher itself failing on a node is a refusal too
            return True
        return fn is None

    return _collect(ep.graph, refused)


def _check_tflite(ep: torch.export.ExportedProgram) -> list[Blocker]:
    import litert_torch.backend.lowerings as lowerings  # noqa: F401  (registers the lowerings)
    from litert_torch import fx_infra
    from litert_torch.backend.lowerings import registry

    ep = fx_infra.safe_run_decompositions(ep, fx_infra.decomp.pre_convert_decomp(), can_skip=False)
    ep = fx_infra.safe_run_decompositions(ep, fx_infra.decomp.pre_lower_decomp(), can_skip=False)
    return _collect(ep.graph, lambda n: isinstance(n.target, torch._ops.OpOverload)
                    and registry.lookup(n.target) is None)


def _check_pte(ep: torch.export.ExportedProgram) -> list[Blocker]:
    """``ep`` after the core-ATen decompositions."""

    def refused(node: torch.fx.Node) -> bool:
        t = node.target
        if not isinstance(t, torch._ops.OpOverload):
            return False
        return torch.Tag.core not in t.tags and t.namespace == "aten" and not t.name().startswith("aten::sym_")

    return _collect(ep.graph, refused)


def _check_openvino(ep: torch.export.ExportedProgram) -> list[Blocker]:
    from openvino.frontend.pytorch.torchdynamo.op_support import OperatorSupport

    support = OperatorSupport({})  # ``ep`` after the core-ATen decompositions
    modules = dict(ep.graph_module.named_modules())
    return _collect(ep.graph, lambda n: isinstance(n.target, torch._ops.OpOverload)
                    and not support.is_node_supported(modules, n))


CHECKS: dict[str, Callable[[torch.export.ExportedProgram], list[Blocker]]] = {
    "onnx": _check_onnx, "tflite": _check_tflite, "pte": _check_pte, "openvino": _check_openvino,
}
# these take the program after the core-ATen decompositions, run once for all of them
_ON_CORE_ATEN = {"pte", "openvino"}


def preflight(model: torch.nn.Module, example: torch.Tensor, formats: list[str]) -> list[FormatCheck]:
    """Per format: every op it will not take (with its module path), or why it was not checked."""
    try:
        with torch.no_grad():
            ep = torch.export.export(model.eval(), (example,))
    except Exception as exc:
        raise FcbenchError(f"--check: torch.export cannot capture the model, so no format that goes through it "
                           f"can convert it: {type(exc).__name__}: {first_line(exc)[:300]}",
                           exit_code=1) from exc
    out = []
    core_aten: torch.export.ExportedProgram | None = None
    for fmt in formats:
        check = CHECKS.get(fmt)
        if check is None:
            note = ("TorchScript tracing takes any op that runs; no op-level preflight" if fmt == "ptl"
                    else "no op-level preflight for this format")
            out.append(FormatCheck(fmt, "unchecked", note=note))
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # torch.onnx prints its progress to stdout
                if fmt in _ON_CORE_ATEN:
                    core_aten = core_aten or ep.run_decompositions()
                    blockers = check(core_aten)
                else:
                    blockers = check(ep)
        except ImportError as exc:
            out.append(FormatCheck(fmt, "unchecked", note=f"converter not installed ({exc.name or exc})"))
            continue
        except Exception as exc:  # an internal table that moved in another converter version
            out.append(FormatCheck(fmt, "unchecked", note=f"preflight unavailable with this converter version "
                                                          f"({type(exc).__name__}: {str(exc)[:160]})"))
            continue
        out.append(FormatCheck(fmt, "blocked" if blockers else "ok", blockers))
    return out


def takers(checks: list[FormatCheck], op: str) -> list[str]:
    """The checked formats that take ``op``."""
    return [c.format for c in checks if c.status in ("ok", "blocked") and all(b.op != op for b in c.blockers)]
