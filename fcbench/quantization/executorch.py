"""ExecuTorch int8: ``executorch-int8`` — PT2E with ExecuTorch's XNNPACK quantizer, lowered to XNNPACK.

The float model is captured with ``torch.export``, annotated by
``executorch.backends.xnnpack.quantizer.xnnpack_quantizer.XNNPACKQuantizer`` (symmetric int8
weights, per channel by default; int8 activations), calibrated on the calibration images
(``torchao.quantization.pt2e.prepare_pt2e`` / ``convert_pt2e``) and lowered like ``convert --to pte``
does (fcbench.conversion.pte): the quantize/dequantize pairs and the ops between them go into
XNNPACK delegate blobs, which run int8 kernels. The ``.pte`` runs in the ``executorch`` backend
(variant ``xnnpack``). ``--keep-float`` names Conv2d/Linear modules (``layer4.1.conv2``, ``fc``) that the
quantizer leaves unannotated (a filter on the nodes' module stack): they stay fp32, in the delegate's float
kernels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcbench.plugins import module_available
from fcbench.quantization.base import Quantized, QuantMethod, Source, Spec, check_keep_float, module_layers


def _without_batchnorm(model: Any) -> Any:
    """``model`` (eval) with every BatchNorm gone: folded into the convolution before it
    (``torch.fx.experimental.optimization.fuse``), the others (a BN before a conv, a BN1d after a
    linear) as the per-channel scale and shift they are in eval mode. Exact; and with no BatchNorm
    left, ``convert_pt2e`` skips its QAT conv-bn folding, which exports ~100 pattern graphs
    (minutes on 2 cores) even for a post-training model."""
    import copy

    import torch
    from torch.fx.experimental.optimization import fuse

    class ChannelAffine(torch.nn.Module):
        def __init__(self, bn: torch.nn.modules.batchnorm._BatchNorm) -> None:
            super().__init__()
            scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
            shift = (bn.bias if bn.affine else torch.zeros_like(bn.running_mean)) - bn.running_mean * scale
            self.register_buffer("scale", scale.detach().clone())
            self.register_buffer("shift", shift.detach().clone())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shape = [1, -1] + [1] * (x.dim() - 2)
            return x * self.scale.view(shape) + self.shift.view(shape)

    def swap(module: torch.nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, torch.nn.modules.batchnorm._BatchNorm) and child.track_running_stats:
                setattr(module, name, ChannelAffine(child))
            else:
                swap(child)

    try:
        fused = fuse(copy.deepcopy(model).eval())
    except Exception:  # not symbolically traceable: keep the BatchNorms (slower, same result)
        return model
    swap(fused)
    return fused.eval()


class ExecutorchInt8(QuantMethod):
    """Static int8 through the XNNPACK quantizer (PT2E), lowered to XNNPACK (.pte)."""

    name = "executorch-int8"
    format = "pte"
    backend = "executorch"
    source = "checkpoint"
    calibration = "required"
    min_calibration = 8
    per_channel_default = True
    keeps_float = True

    @dataclass
    class Options:
        batch_size: int = 1  # calibration batch (the exported graph has the manifest's batch)

        def __post_init__(self) -> None:
            if self.batch_size != 1:
                raise ValueError(f"batch_size must be 1 (the graph is exported for batch 1), got {self.batch_size}")

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, why = module_available("executorch.backends.xnnpack.quantizer.xnnpack_quantizer",
                                   "pip install 'fcbench[executorch]'")
        if not ok:
            return ok, why
        return module_available("torchao.quantization.pt2e.quantize_pt2e", "pip install torchao")

    def layers(self, source: Source, options: Any) -> list[str]:
        """The model's module paths of the Conv2d and Linear layers the quantizer annotates, in order."""
        return module_layers(source.model())

    def _keep_filter(self, source: Source, options: Any, keep: list[str]) -> Any:
        """A node filter for the quantizer that is False on the ``keep`` modules' nodes (None: keep nothing)."""
        if not keep:
            return None
        check_keep_float(self.name, keep, self.layers(source, options), source.path)
        from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

        kept = [get_module_name_filter(k) for k in keep]
        return lambda node: not any(f(node) for f in kept)

    def quantize(self, source: Source, options: Any, spec: Spec, out: Path, context: Any) -> Quantized:
        import torch
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        from fcbench.conversion.pte import lower_to_pte

        calib = spec.calibration
        assert calib is not None  # calibration = "required"
        per_channel = bool(spec.per_channel)
        model, example = _without_batchnorm(source.model()), source.example()
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
        keep = self._keep_filter(source, options, list(spec.keep_float))
        if keep is not None:
            quantizer.set_filter_function(keep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                captured = torch.export.export(model, (example,)).module()
                prepared = prepare_pt2e(captured, quantizer)
                for x in calib.batches(example.shape[0]):
                    if x.shape[0] == example.shape[0]:
                        prepared(torch.from_numpy(x))
                converted = convert_pt2e(prepared)
                exported = torch.export.export(converted, (example,))
        result = lower_to_pte(exported, "xnnpack", out)
        facts = {"quantizer": "XNNPACKQuantizer", "per_channel": per_channel, "route": "pt2e",
                 **{k: v for k, v in result.options.items() if k in ("executorch", "torch")}}
        return Quantized(out, options={**facts, "calibration_images": len(calib)},
                         extra={**facts, **result.extra})
