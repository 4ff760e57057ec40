"""Built-in pruning techniques (verb ``prune``), registered in ``pyproject.toml`` like a third party's.

- ``l1-unstructured``: zeroes the smallest-magnitude fraction ``ratio`` of the convolution and linear
  weights, over all of them (``scope=global``) or per layer (``scope=layer``). The tensors keep their
  shapes: dense formats and runtimes keep their size and speed.
- ``channel``: structured pruning with Torch-Pruning's dependency graph: whole channels are removed
  from convolutions and the norms, PReLUs and linears that depend on them, residual additions kept
  consistent. The layers that produce the model's output (the embedding's linear and BatchNorm1d, a
  classifier's linear) keep their output size. ``round_to`` keeps every pruned channel count a
  multiple of N (SIMD widths); a layer too narrow to keep N channels at this ratio is left whole.
  Importance ``taylor`` (first order: |weight x gradient|) takes the gradients of the checkpoint's own
  training loss (its margin head, e.g. ArcFace, or a classifier's cross-entropy) over ``batches``
  batches of the context's data. ``iterative`` K removes the channels in K rounds (Torch-Pruning's
  schedule: after round i, i/K of ``ratio``, counted on the original widths, so the final widths are
  one-shot's); with ``finetune_epochs`` E each round is followed by the context's ``finetune``
  (``fcbench prune`` runs E epochs of the train loop there).

Both change the model they get from :meth:`Checkpoint.build_model` and return
``checkpoint.with_model(model)``; :func:`fcbench.techniques.apply_technique` writes the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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


IMPORTANCES = ("l1", "l2", "bn-scale", "taylor")


class ChannelPrune(Technique):
    """Remove whole channels (Torch-Pruning's dependency graph); the output layers keep their size."""

    name = "channel"
    verb = "prune"

    @dataclass
    class Options:
        ratio: float = 0.5
        importance: Literal["l1", "l2", "bn-scale", "taylor"] = "l2"
        round_to: int = 1
        scope: Literal["global", "layer"] = "layer"
        batches: int = 4  # taylor: batches of data whose loss gradients rank the channels
        iterative: int = 1  # rounds of pruning
        finetune_epochs: int = 0  # epochs of fine-tuning after each round (context.finetune)
        lr: float = 0.01  # the fine-tuning learning rate (recorded; context.finetune trains with it)
        # distill method(s) the fine-tuning adds, the unpruned model as the teacher (recorded; context.finetune
        # distils; "" when it does not)
        finetune_distill: str = ""
        finetune_distill_options: dict = field(default_factory=dict)  # its method options (recorded)

        def __post_init__(self) -> None:
            _check_ratio(self.ratio)
            for key in ("round_to", "batches", "iterative"):
                if getattr(self, key) < 1:
                    raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
            if self.finetune_epochs < 0:
                raise ValueError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")
            if not self.lr > 0:
                raise ValueError(f"lr must be > 0, got {self.lr}")

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
        taylor = options.importance == "taylor"
        if taylor:
            data = context.require_data("channel --importance taylor")
            loss_of = training_loss(checkpoint)
        if options.finetune_epochs and context.finetune is None:
            raise FcbenchError("prune: finetune_epochs needs data to fine-tune on (fcbench prune --data)")
        importance = {"l1": lambda: tp.importance.MagnitudeImportance(p=1),
                      "l2": lambda: tp.importance.MagnitudeImportance(p=2),
                      "bn-scale": lambda: tp.importance.BNScaleImportance(),
                      "taylor": lambda: tp.importance.TaylorImportance()}[options.importance]()
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
                                      round_to=options.round_to if options.round_to > 1 else None,
                                      iterative_steps=options.iterative)
        head = checkpoint.head
        for step in range(1, options.iterative + 1):
            if taylor:
                _taylor_gradients(model, loss_of, data(checkpoint.preprocessing, 32), options.batches)
            pruner.step()
            model.zero_grad(set_to_none=True)
            if options.iterative > 1:
                context.report(f"channel: round {step}/{options.iterative}: params "
                               f"{sum(p.numel() for p in model.parameters()):,}")
            if options.finetune_epochs:
                tuned = context.finetune(replace(checkpoint.with_model(model.eval()), head=head), step,
                                         options.iterative)
                model.load_state_dict(tuned.state_dict)
                head = tuned.head
                if taylor:
                    loss_of = training_loss(replace(checkpoint, head=head))
        after = sum(p.numel() for p in model.parameters())
        if after >= before:
            raise FcbenchError(f"prune: no channel of {checkpoint.path.name} was removed at ratio {options.ratio}; "
                               "raise the ratio or lower --round-to")
        context.report(f"channel: params {before:,} -> {after:,}")
        return replace(checkpoint.with_model(model.eval()), head=head)


def training_loss(checkpoint: Any) -> Any:
    """``loss(model, images, labels)``: the checkpoint's own training loss, the cross-entropy of its margin
    head's logits (a face model, which keeps its head: ArcFace, CosFace, softmax) or of a classifier's
    outputs. A face checkpoint without its head (a plain backbone, or one whose embedding changed) has no
    loss to take gradients of: one error naming the other importances."""
    import torch

    if checkpoint.task != "embedding":
        return lambda model, x, y: torch.nn.functional.cross_entropy(model(x), y)
    spec = checkpoint.head
    if not spec or not spec.get("state_dict") or spec.get("embedding_size") != checkpoint.output_size:
        raise FcbenchError(f"prune: {checkpoint.path.name} holds no training head (e.g. ArcFace) to take the loss "
                           "of, which --importance taylor needs; use --importance l2, l1 or bn-scale")
    from fcbench.models import create_head

    head = create_head(spec["name"], spec["embedding_size"], spec["num_classes"], **spec.get("options", {}))
    head.load_state_dict(spec["state_dict"])
    classes = int(spec["num_classes"])

    def loss(model: Any, x: Any, y: Any) -> Any:
        if int(y.max()) >= classes:
            raise FcbenchError(f"prune: --data has labels up to {int(y.max())} but the head of "
                               f"{checkpoint.path.name} knows {classes} classes; give the data it was trained on")
        return torch.nn.functional.cross_entropy(head(model(x), y), y)

    return loss


def _taylor_gradients(model: Any, loss_of: Any, batches: Any, count: int) -> None:
    """Accumulate the loss gradients of ``count`` batches in the model's weights (eval mode: the BatchNorm
    statistics stay as they are)."""
    model.eval()
    model.zero_grad(set_to_none=True)
    seen = 0
    for x, y in batches:
        loss_of(model, x, y).backward()
        seen += 1
        if seen >= count:
            break
    if not seen:
        raise FcbenchError("prune: --data gave no batch to take the loss gradients of (--importance taylor)")


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
