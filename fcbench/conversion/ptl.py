"""PyTorch Mobile (lite interpreter) artifacts: TorchScript saved with ``_save_for_lite_interpreter``.

``torch.utils.mobile_optimizer.optimize_for_mobile`` needs XNNPACK, which the CPU wheels of
recent torch builds lack (it fails there), so it is not used. Instead the TorchScript module
is frozen (``torch.jit.freeze``: parameters become constants, Conv+BatchNorm are folded),
which is the part of optimize_for_mobile that does not need XNNPACK.

The lite interpreter is deprecated upstream in favour of ExecuTorch (``.pte``); fcbench keeps
it so existing Android apps built on it can be measured.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported when an export runs: checking options stays light
    import torch

from fcbench.conversion.base import Exporter, ExportResult
from fcbench.errors import FcbenchError, first_line
from fcbench.options import OptionSpec, exporter_options

METHODS = ("trace", "script")
# what ``--opt ptl.KEY=VALUE`` takes (plain data, checked without importing torch)
PTL_OPTIONS = {
    "method": OptionSpec(str, "trace", "how TorchScript is made: trace or script", choices=METHODS),
    "freeze": OptionSpec(bool, True, "torch.jit.freeze before saving"),
}


class PtlExporter(Exporter):
    """PyTorch -> ``.ptl``.

    Options: ``method`` ("trace" (default) or "script"): how TorchScript is made;
    ``freeze`` (bool, default True): ``torch.jit.freeze`` before saving.
    """

    format = "ptl"
    module = "torch"
    install_hint = "pip install torch"
    options = PTL_OPTIONS

    def export(self, model: torch.nn.Module, example: torch.Tensor, out: Path, options: dict[str, Any]) -> ExportResult:
        import torch

        opts = exporter_options("ptl", PTL_OPTIONS, options)
        method, freeze = opts["method"], opts["freeze"]
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        model = model.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings, lite-interpreter deprecation
                if method == "trace":
                    scripted = torch.jit.trace(model, (example.float(),), check_trace=False)
                else:
                    scripted = torch.jit.script(model)
                if freeze:
                    scripted = torch.jit.freeze(scripted.eval())
                fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".", suffix=".tmp")
                os.close(fd)
                try:
                    scripted._save_for_lite_interpreter(tmp)
                    os.replace(tmp, out)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
        except FcbenchError:
            raise
        except Exception as exc:  # torch.jit raises RuntimeError, TypeError, NotSupportedError, ...
            raise FcbenchError(f"ptl: torch.jit.{method} failed: {type(exc).__name__}: {first_line(exc)[:300]}",
                               exit_code=1) from exc
        extra: dict[str, Any] = {}
        with contextlib.suppress(Exception):  # informative only
            from fcbench.backends.pytorch_mobile import bytecode_ops

            extra["ptl_operators"] = sorted({op for _, op in bytecode_ops(out)})
        return ExportResult(file=out, input_layout="NCHW",
                            options={"method": method, "freeze": freeze, "optimize_for_mobile": False,
                                     "torch": torch.__version__},
                            extra=extra)
