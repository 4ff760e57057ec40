"""``fcbench eval ARTIFACT --device D``: the artifact runs on the device, the scores are computed here.

Eval's metrics feed the model batch by batch; a round trip to a device per batch would reload the model
each time. So eval runs twice over the data: the first pass records every input the metrics (and the
cosine-to-parent check) ask for, answering with placeholders; those inputs go to the device as one ``.npy``
in one ``run`` job of the bench worker (``python -m fcbench.worker``), which loads the artifact once and
writes every output; the second pass answers each input with the device's output for it (looked up by the
input's bytes, so order does not matter). The scores then come from what the device's runtime computed —
a GPU delegate or a runtime that changes the numbers is caught by ``--max-drop``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.errors import FcbenchError


class DeviceRuntimeModel:
    """Called like eval's ``_RuntimeModel`` (batch tensor in, outputs out); see the module doc."""

    def __init__(self, path: Path, manifest: Any, label: str, threads: int | None, device_name: str) -> None:
        from fcbench.backends import expand, get_backend
        from fcbench.devices.inventory import load_device_profile, open_device

        (spec,) = expand([label])
        backend = get_backend(spec.plugin)
        if manifest.format not in backend.formats:
            raise FcbenchError(f"eval: {spec.label} does not load {manifest.format} files; pick another --backend")
        self.profile_ = load_device_profile(device_name)
        if not self.profile_.offers(spec):
            raise FcbenchError(f"eval: device {device_name} does not offer {spec.label} (its profile's backends: "
                               f"{', '.join(self.profile_.backends)})")
        self.path, self.manifest, self.threads = path, manifest, threads
        self.label = spec.label
        self.plugin, self.variant = spec.plugin, spec.variant
        self.profile = spec.label if spec.profile else ""
        self.options = dict(spec.options)
        self.layout = manifest.inputs[0].layout
        shape = manifest.inputs[0].shape
        self.batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
        self.name = path.name
        self.precision = None
        self.session = self  # eval reads session.placement()
        self.device = open_device(self.profile_)
        self.info = self.device.info()
        self._recording = True
        self._seen: dict[bytes, int] = {}
        self._inputs: list[np.ndarray] = []
        self._outputs: np.ndarray | None = None
        self._placement: list[Any] = []
        self.raw: dict[str, Any] = {}

    @staticmethod
    def _key(a: np.ndarray) -> bytes:
        return hashlib.sha1(np.ascontiguousarray(a).tobytes()).digest()

    def __call__(self, x: Any) -> np.ndarray:
        arr = x.numpy().astype(np.float32, copy=False) if hasattr(x, "numpy") else np.asarray(x, np.float32)
        if self.layout == "NHWC":
            arr = arr.transpose(0, 2, 3, 1)
        keys = [self._key(a) for a in arr]
        if self._recording:
            for k, a in zip(keys, arr, strict=True):
                if k not in self._seen:
                    self._seen[k] = len(self._inputs)
                    self._inputs.append(np.array(a))
            rng = np.random.default_rng(len(self._inputs))
            det = self.manifest.extra.get("detection") if self.manifest.output_kind == "detections" else None
            width = int(np.prod(det["raw_shape"])) if det else self.manifest.output_size  # a detector's raw rows
            return rng.normal(size=(len(arr), width)).astype(np.float32)
        assert self._outputs is not None
        missing = [i for i, k in enumerate(keys) if k not in self._seen]
        if missing:
            raise FcbenchError(f"eval on device {self.profile_.name}: an input was asked for that was not sent")
        return self._outputs[[self._seen[k] for k in keys]].reshape(len(arr), -1)

    def run_on_device(self, logs: Path | None = None) -> None:
        """Send the recorded inputs, run them on the device in one job, keep the outputs."""
        import tempfile

        from fcbench.benchmark.job import BenchJob
        from fcbench.benchmark.run import _companions
        from fcbench.devices.runner import run_job

        x = np.stack(self._inputs) if self._inputs else np.empty((0,), np.float32)
        companions = _companions(self.path, self.manifest)
        with tempfile.TemporaryDirectory(prefix="fcbench-eval-") as tmp:
            np.save(Path(tmp) / "inputs.npy", x, allow_pickle=False)
            job = BenchJob(artifact=self.path.name, manifest=self.manifest.to_dict(), plugin=self.plugin,
                           variant=self.variant, kind="run", companions=companions, options=self.options,
                           threads=self.threads, batch=self.batch or 16, inputs="inputs.npy", outputs="outputs.npy",
                           label=f"{self.path.name} on {self.label} on {self.profile_.name}")
            raw = run_job(self.device, job, [self.path, *(self.path.parent / c for c in companions),
                                             Path(tmp) / "inputs.npy"], logs=logs,
                          timeout=self.profile_.measure.timeout_s or None)
        if raw.get("status") != "ok":
            raise FcbenchError(f"eval on device {self.profile_.name} ({self.profile_.where()}): "
                               f"{raw.get('reason', 'the run failed')}", exit_code=1)
        from fcbench.backends import NodePlacement

        self._outputs = np.asarray(raw["outputs"]).reshape(len(x), -1)
        self._placement = [NodePlacement(**r) for r in raw.get("placement") or []]
        self.raw = {k: v for k, v in raw.items() if k != "outputs"}
        self._recording = False

    def placement(self) -> list[Any]:
        return self._placement

    def images(self) -> int:
        return len(self._inputs)

    def close(self) -> None:
        try:
            self.device.cleanup()
        except Exception:  # a device that went away: nothing left to clean here
            pass
