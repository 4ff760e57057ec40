"""Built-in pruning techniques (verb ``prune``), registered in ``pyproject.toml`` like a third party's.

- ``l1-unstructured``: zeroes the smallest-magnitude fraction ``ratio`` of the convolution and linear
  weights, over all of them (``scope=global``) or per layer (``scope=layer``). The tensors keep their
  shapes: dense formats and runtimes keep their size and speed.
- ``channel``: structured pruning with Torch-Pruning's dependency graph: whole channels are removed
  from convolutions and the norms, PReLUs and linears that depend on them, residual additions kept
  consistent. The layers that produce the model's output (the embedding's linear and BatchNorm1d, a
  classifier's linear) keep their output size. ``round_to`` keeps every pruned channel count a
  multiple of N (SIMD widths); a layer too narrow to keep N channels at this ratio is left whole.

Both change the model they get from :meth:`Checkpoint.build_model` and return
``checkpoint.with_model(model)``; :func:`fcbench.techniques.apply_technique` writes the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fcbench.errors import FcbenchError
from fcbench.techniques.base import Technique, TechniqueContext

UNSTRUCTURED_NOTE = "unstructured sparsity: dense runtimes keep size and speed"


def _check_ratio(ratio: float) -> None:
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1) (the fraction to prune, e.g. 0.5), got {ratio}")


def prunable_weights(model: Any) -> list[tuple[str, Any]]:
    """``(name, weight)`` of every convolution and linear layer: what unstructured pruning zeroes."""
    import torch

    return [(name, m.weight) for name, m in model.named_modules()
            if isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.Linear)) and m.weight is not None]


def sparsity(model: Any) -> float:
    """Fraction of zeros in the convolution and linear weights."""
    weights = [w for _, w in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    return float(sum(int((w == 0).sum()) for w in weights) / total) if total else 0.0


class L1Unstructured(Technique):
    """Zero the smallest-|w| fraction ``ratio`` of conv/linear weights (global or per layer); shapes stay."""

    name = "l1-unstructured"
    verb = "prune"

    @dataclass
    class Options:
        ratio: float = 0.5
        scope: Literal["global", "layer"] = "global"

        def __post_init__(self) -> None:
            _check_ratio(self.ratio)

    def apply(self, checkpoint: Any, options: Any, context: TechniqueContext) -> Any:
        import torch

        model = checkpoint.build_model()
        weights = [w for _, w in prunable_weights(model)]
        if not weights:
            raise FcbenchError(f"prune: {checkpoint.path} has no convolution or linear weights to prune")
        with torch.no_grad():
            if options.scope == "global":
                flat = torch.cat([w.detach().abs().flatten() for w in weights])
                k = int(round(options.ratio * flat.numel()))
                if k > 0:
                    threshold = torch.kthvalue(flat, k).values
                    for w in weights:
                        w[w.abs() <= threshold] = 0.0
            else:
                for w in weights:
                    k = int(round(options.ratio * w.numel()))
                    if k > 0:
                        flat = w.abs().flatten()
                        idx = torch.topk(flat, k, largest=False).indices
                        w.view(-1)[idx] = 0.0
        context.report(f"l1-unstructured: weight sparsity {sparsity(model):.1%}")
        return checkpoint.with_model(model)


IMPORTANCES = ("l1", "l2", "bn-scale")


class ChannelPrune(Technique):
    """Remove whole channels (Torch-Pruning's dependency graph); the output layers keep their size."""

    name = "channel"
    verb = "prune"

    @dataclass
    class Options:
        ratio: float = 0.5
        importance: Literal["l1", "l2", "bn-scale"] = "l2"
        round_to: int = 1
        scope: Literal["global", "layer"] = "layer"

        def __post_init__(self) -> None:
            _check_ratio(self.ratio)
            if self.round_to < 1:
                raise ValueError(f"round_to must be >= 1 (channel counts a multiple of it), got {self.round_to}")

    @classmethod
    def available(cls) -> tuple[bool, str]:
        from fcbench.plugins import module_available

        return module_available("torch_pruning", "pip install 'fcbench[prune]'")

    def apply(self, checkpoint: Any, options: Any, context: TechniqueContext) -> Any:
        import torch
        import torch_pruning as tp

        model = checkpoint.build_model()
        example = torch.zeros(1, 3, *checkpoint.preprocessing.size)
        kept = output_layers(model)
        narrow = []
        if options.round_to > 1:  # a layer that would keep fewer than round_to channels is left whole
            for m in model.modules():
                out = _out_channels(m)
                if out is not None and m not in kept and int(out * (1 - options.ratio)) < options.round_to:
                    narrow.append(m)
        ignored = kept + narrow
        importance = {"l1": lambda: tp.importance.MagnitudeImportance(p=1),
                      "l2": lambda: tp.importance.MagnitudeImportance(p=2),
                      "bn-scale": lambda: tp.importance.BNScaleImportance()}[options.importance]()
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        if not any(True for _ in graph.get_all_groups(ignored_layers=ignored)):
            why = (f"every layer is kept (the output layers, and {len(narrow)} too narrow to keep --round-to "
                   f"{options.round_to} channels at ratio {options.ratio})" if narrow
                   else "only the output layers have channels, and they are kept")
            raise FcbenchError(f"prune: {checkpoint.path.name} has no prunable channels: {why}; "
                               + ("lower --round-to or the ratio" if narrow else "use --method l1-unstructured"))
        before = sum(p.numel() for p in model.parameters())
        pruner = tp.pruner.MetaPruner(model, example, importance=importance, pruning_ratio=options.ratio,
                                      global_pruning=options.scope == "global", ignored_layers=ignored,
                                      round_to=options.round_to if options.round_to > 1 else None)
        pruner.step()
        after = sum(p.numel() for p in model.parameters())
        if after >= before:
            raise FcbenchError(f"prune: no channel of {checkpoint.path.name} was removed at ratio {options.ratio}; "
                               "raise the ratio or lower --round-to")
        context.report(f"channel: params {before:,} -> {after:,}")
        return checkpoint.with_model(model.eval())


def _out_channels(module: Any) -> int | None:
    import torch

    if isinstance(module, torch.nn.modules.conv._ConvNd):
        return int(module.out_channels)
    if isinstance(module, torch.nn.Linear):
        return int(module.out_features)
    return None


def output_layers(model: Any) -> list[Any]:
    """The layers whose outputs are the model's output (size ``model.output_size``): every linear
    and BatchNorm1d of that width. Channel pruning keeps them whole."""
    import torch

    size = int(getattr(model, "output_size", 0) or 0)
    found = []
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and m.out_features == size:
            found.append(m)
        elif isinstance(m, torch.nn.BatchNorm1d) and m.num_features == size:
            found.append(m)
    if not found:  # no output-sized linear: keep the last linear or convolution whole
        last = [m for m in model.modules() if _out_channels(m) is not None]
        found = last[-1:]
    return found
