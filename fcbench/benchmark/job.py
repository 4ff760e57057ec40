"""A bench cell as a JSON job: what the worker (``python -m fcbench.worker``) needs to run it on a device.

The job lives in a folder on the device together with the files it names (artifact, companion
files, inputs), so every file name here is relative to the job's folder. Two kinds:

- ``bench``: time single-stream queries of the prepared input (``prepared_input(manifest, batch,
  seed)``, made by the worker) and report raw samples; the host computes the statistics.
  With ``others`` (more artifacts, each ``{"artifact", "manifest", "companions"}``), the artifacts are
  timed *in turn* in one process (``block_seconds`` each, round after round: A/B testing, see
  :func:`fcbench.benchmark.timing.time_interleaved`), and the result carries one raw result per artifact.
- ``run``: run the array in ``inputs`` (an ``.npy`` beside the job, in the manifest's layout) in
  slices of ``batch`` (the artifact's fixed batch; the last slice is padded) and write the
  outputs to ``outputs`` (an ``.npy`` beside the job); nothing is timed.

Stdlib only: the worker reads it before it imports any runtime.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

JOB_VERSION = 1
KINDS = ("bench", "run")


@dataclass
class BenchJob:
    artifact: str  # file name, relative to the job folder
    manifest: dict[str, Any]  # Manifest.to_dict() of the artifact
    plugin: str  # backend plugin, e.g. "onnxruntime"
    variant: str
    kind: str = "bench"  # bench | run
    companions: list[str] = field(default_factory=list)  # read with the artifact (OpenVINO's .bin)
    options: dict[str, Any] = field(default_factory=dict)  # backend options, precision options included
    threads: int | None = None
    warmup: int = 10
    runs: int = 50
    min_seconds: float = 1.0
    max_seconds: float | None = None
    batch: int = 1  # bench: the prepared input's batch; run: the slice each call gets
    seed: int = 0  # of the prepared input's noise
    inputs: str | None = None  # run: .npy file of inputs, relative to the job folder
    outputs: str | None = None  # run: .npy file the worker writes, relative to the job folder
    label: str = ""  # how the host names the cell in messages, e.g. "model.onnx on ort-cpu"
    others: list[dict[str, Any]] = field(default_factory=list)  # bench: artifacts timed in turn with this one
    block_seconds: float | None = None  # with others: seconds each artifact is timed before the next takes over
    version: int = JOB_VERSION

    def files(self) -> list[str]:
        """The files the job folder must hold before the worker starts."""
        others = [n for o in self.others for n in [o["artifact"], *o.get("companions", [])]]
        return [self.artifact, *self.companions, *others, *([self.inputs] if self.inputs else [])]

    def validate(self) -> BenchJob:
        problems = []
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(KINDS)}, got '{self.kind}'")
        if self.kind == "run" and not (self.inputs and self.outputs):
            problems.append("a run job needs inputs and outputs (.npy file names)")
        if self.version > JOB_VERSION:
            problems.append(f"job version {self.version} is newer than this worker's {JOB_VERSION}; update fcbench "
                            "on the device")
        if self.others and (self.kind != "bench" or
                            not all(isinstance(o, dict) and {"artifact", "manifest"} <= set(o) for o in self.others)):
            problems.append("others: bench jobs only, each with artifact and manifest")
        if self.batch < 1 or self.runs < 1 or self.warmup < 0:
            problems.append("batch and runs must be >= 1, warmup >= 0")
        for name in self.files() + ([self.outputs] if self.outputs else []):
            if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
                problems.append(f"file '{name}' must be a name inside the job folder")
        if problems:
            raise ValueError("bench job: " + "; ".join(problems))
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BenchJob:
        """Raises ValueError on text that is not a job (unknown keys included: a newer host's job)."""
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("bench job: not a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"bench job: unknown keys {', '.join(unknown)} (a newer fcbench wrote it?)")
        try:
            return cls(**d).validate()
        except TypeError as exc:  # a required key missing
            raise ValueError(f"bench job: {exc}") from exc
