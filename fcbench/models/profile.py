"""Parameter and multiply-accumulate (MAC) counts from one forward pass.

Counted: convolutions (any groups, so depthwise too; transposed too), Linear/Bilinear, and
matmul-like tensor ops called outside those modules (``@``/matmul, mm, bmm, addmm, baddbmm,
functional linear/conv, scaled-dot-product attention, MultiheadAttention). Not counted:
BatchNorm, activations, pooling, element-wise adds, normalisation. Bias adds are not counted.
``flops = 2 * macs``.

Published figures differ in convention: torchvision's "GFLOPS" (resnet18: 1.81) and
insightface's "GFLOPs" (r50: 6.3, printed by ``flops.py`` from ptflops' MAC count) are both
MACs, i.e. this module's ``macs``. ``params`` counts every parameter, trainable or not
(insightface's frozen ``features.weight`` included; ptflops leaves it out).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

_MM_RIGHT = {  # op -> index of the right-hand matrix, whose -2 dim is contracted
    torch.matmul: 1, Tensor.matmul: 1, Tensor.__matmul__: 1, Tensor.__rmatmul__: 0,
    torch.mm: 1, Tensor.mm: 1, torch.bmm: 1, Tensor.bmm: 1,
    torch.addmm: 2, Tensor.addmm: 2, torch.baddbmm: 2, Tensor.baddbmm: 2,
}
_CONVS = {F.conv1d, F.conv2d, F.conv3d}


def _contracted(t: Tensor) -> int:
    return int(t.shape[0] if t.dim() == 1 else t.shape[-2])


def _module_macs(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> int:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, Tensor):
        return 0
    if isinstance(m, nn.MultiheadAttention):
        q, k = inputs[0], inputs[1]
        e = m.embed_dim
        lq, lk = q.shape[:-1].numel(), k.shape[:-1].numel()  # tokens x batch
        batch = q.shape[0] if (m.batch_first and q.dim() == 3) else (q.shape[1] if q.dim() == 3 else 1)
        proj = lq * e * e + lk * (m.kdim + m.vdim) * e + lq * e * e
        attn = 2 * (lq * lk // max(batch, 1)) * e
        return int(proj + attn)
    if isinstance(m, nn.Bilinear):
        return out.numel() * m.in1_features * m.in2_features
    if hasattr(m, "in_channels") and hasattr(m, "kernel_size") and hasattr(m, "groups"):
        k = math.prod(m.kernel_size) if isinstance(m.kernel_size, (tuple, list)) else m.kernel_size ** 2
        transposed = getattr(m, "transposed", False) or "Transpose" in type(m).__name__
        if transposed:
            x = inputs[0]
            return x.numel() * (m.out_channels // m.groups) * k
        return out.numel() * (m.in_channels // m.groups) * k
    if hasattr(m, "in_features") and hasattr(m, "out_features"):  # Linear, quantized/LoRA-free linears
        return out.numel() * m.in_features
    return 0


def _counted_module(m: nn.Module) -> bool:
    if isinstance(m, (nn.MultiheadAttention, nn.Bilinear)):
        return True
    if isinstance(m, nn.Module) and next(m.children(), None) is not None:
        return False  # only leaves (a wrapper with in_features, e.g. a LoRA layer, counts its children)
    conv = hasattr(m, "in_channels") and hasattr(m, "kernel_size") and hasattr(m, "groups")
    return conv or (hasattr(m, "in_features") and hasattr(m, "out_features"))


class _Counter(TorchFunctionMode):
    """Counts matmul-like functional ops that happen outside counted modules."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.macs = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0 and isinstance(out, Tensor):
            self.macs += _fn_macs(func, args, kwargs, out)
        return out


def _fn_macs(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Tensor) -> int:
    try:
        if func in _MM_RIGHT:
            return out.numel() * _contracted(args[_MM_RIGHT[func]])
        if func is F.linear:
            return out.numel() * int(args[1].shape[-1])
        if func in _CONVS:
            w = args[1] if len(args) > 1 else kwargs["weight"]
            return out.numel() * int(w.shape[1]) * math.prod(w.shape[2:])
        if func is F.scaled_dot_product_attention:
            q, k, v = args[:3]
            return q.shape[:-1].numel() * int(k.shape[-2]) * (int(q.shape[-1]) + int(v.shape[-1]))
    except (TypeError, IndexError, KeyError, AttributeError):
        return 0
    return 0


def profile(model: nn.Module, input_size: tuple[int, int] | None = None, batch: int = 1,
            channels: int = 3) -> dict[str, int]:
    """Params, MACs and FLOPs (= 2 x MACs) of one forward pass on zeros of shape (batch, channels, H, W).

    ``input_size`` defaults to ``model.input_size``. The model runs in eval mode under
    ``torch.no_grad``; every submodule's train/eval mode is restored afterwards.
    """
    if input_size is None:
        input_size = getattr(model, "input_size", None)
        if input_size is None:
            raise ValueError("profile: pass input_size=(H, W); the model has no input_size attribute")
    h, w = (int(input_size), int(input_size)) if isinstance(input_size, int) else (int(s) for s in input_size)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    counter = _Counter()
    module_macs = [0]

    def pre(_m: nn.Module, _inputs: Any) -> None:
        counter.depth += 1

    def post(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
        counter.depth -= 1
        module_macs[0] += _module_macs(m, inputs, out)

    modes = {m: m.training for m in model.modules()}
    handles = []
    for m in model.modules():
        if _counted_module(m):
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(torch.zeros(batch, channels, h, w, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for m, mode in modes.items():
            m.training = mode
    macs = int(module_macs[0] + counter.macs)
    params = sum(p.numel() for p in model.parameters())
    return {"params": int(params), "macs": macs, "flops": 2 * macs}
