"""Run a bench job on any device through the ``Device`` protocol only: push, exec, pull.

``run_job(device, job, files)`` pushes the job's files and the job into a fresh folder on the
device (``jobs/<id>/``, relative to the device's work dir), runs ``<device.python> -m
fcbench.worker jobs/<id>/job.json jobs/<id>/out.json`` there, pulls ``out.json`` (and, for a
``run`` job, the outputs ``.npy``) back and returns the worker's raw result. The local, adb and
ssh drivers differ only in how they push, exec and pull.

A worker that crashes (non-zero exit, killed, timed out) or leaves no readable ``out.json``
gives ``{"status": "failed", "reason": <one line naming the cell and the log folder>}``; its
stdout, stderr, job and whatever output it left are kept in ``logs`` (see :func:`keep_logs`).
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import uuid
from pathlib import Path
from typing import Any

from fcbench.benchmark.job import BenchJob
from fcbench.plugins import Device

WORKER_MODULE = "fcbench.worker"


def device_python(device: Device) -> list[str]:
    """The command that runs python on the device (``LocalDevice``: this interpreter)."""
    py = getattr(device, "python", None) or ["python3"]
    return [py] if isinstance(py, str) else list(py)


def worker_command(device: Device, job_file: str, out_file: str) -> list[str]:
    """``python -m fcbench.worker JOB OUT`` on the device, under ``taskset MASK`` when the device has an
    ``affinity`` (a hex CPU mask) set."""
    mask = getattr(device, "affinity", None)
    pin = ["taskset", mask] if mask else []
    return [*pin, *device_python(device), "-m", WORKER_MODULE, job_file, out_file]


def _exit_text(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by signal {-rc} ({signal.Signals(-rc).name})"
        except ValueError:
            return f"was killed by signal {-rc}"
    if rc == 124:
        return "timed out"
    if rc == 127:
        return "could not be started (exit 127: python not found?)"
    return f"exited {rc}"


def keep_logs(logs: Path, host_dir: Path, stdout: str, stderr: str) -> Path:
    """Keep what the worker left: ``stdout.txt``, ``stderr.txt``, ``job.json`` and ``out.json`` (when
    it wrote one) in ``logs``, a new folder (``-2``, ``-3``... when the name is taken)."""
    folder, n = logs, 2
    while folder.exists():
        folder, n = logs.with_name(f"{logs.name}-{n}"), n + 1
    folder.mkdir(parents=True)
    (folder / "stdout.txt").write_text(stdout or "")
    (folder / "stderr.txt").write_text(stderr or "")
    for name in ("job.json", "out.json"):
        if (host_dir / name).exists():
            shutil.copy2(host_dir / name, folder / name)
    return folder


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:160] if lines else ""


def run_job(device: Device, job: BenchJob, files: list[str | Path] | dict[str, str | Path], *,
            logs: str | Path | None = None, timeout: float | None = None, clean: bool = True) -> dict[str, Any]:
    """Run ``job`` on ``device``; ``files`` are the local paths of the files it names (matched by
    file name; or a mapping from the job's names, which may hold a subfolder, to local paths).
    Returns the worker's raw result; on failure also ``logs`` (the kept folder, when ``logs`` was
    given). ``clean`` removes the job folder on the device afterwards (leave it to
    ``device.cleanup()`` for a device made for this job alone). For a ``run`` job the outputs
    come back loaded, as ``outputs`` (a numpy array)."""
    job.validate()
    by_name = ({str(k): Path(v) for k, v in files.items()} if isinstance(files, dict)
               else {Path(f).name: Path(f) for f in files})
    missing = [n for n in job.files() if n not in by_name]
    if missing:
        raise ValueError(f"run_job: no local file given for {', '.join(missing)}")
    label = job.label or f"{job.artifact} on {job.plugin}:{job.variant}"
    remote = f"jobs/{uuid.uuid4().hex[:12]}"
    host_dir = Path(tempfile.mkdtemp(prefix="fcbench-job-"))
    try:
        for name in job.files():
            device.push(str(by_name[name]), f"{remote}/{name}")
        (host_dir / "job.json").write_text(job.to_json())
        device.push(str(host_dir / "job.json"), f"{remote}/job.json")
        rc, stdout, stderr = device.exec(worker_command(device, f"{remote}/job.json", f"{remote}/out.json"),
                                         timeout=timeout)
        result, problem = None, ""
        try:
            device.pull(f"{remote}/out.json", str(host_dir / "out.json"))
            result = json.loads((host_dir / "out.json").read_text())
            if not isinstance(result, dict) or "status" not in result:
                result, problem = None, "wrote an out.json that is not a worker result"
        except (OSError, ValueError) as exc:  # not there (FileNotFoundError, a driver's error) or not JSON
            problem = ("wrote an out.json that is not JSON" if isinstance(exc, ValueError)
                       else "left no out.json")
        if rc != 0 or result is None:
            why = _exit_text(rc) if rc != 0 else problem
            last = _last_line(stderr) or _last_line(stdout)
            kept = keep_logs(Path(logs), host_dir, stdout, stderr) if logs else None
            where = f"; stdout, stderr and output kept in {kept}" if kept else ""
            return {"status": "failed", "reason": f"worker for {label} {why}" + (f" ({last})" if last else "")
                    + where, "logs": str(kept) if kept else None, "returncode": rc}
        if result.get("reason"):
            result["reason"] = _localize(str(result["reason"]), result.get("job_dir"), remote, by_name)
        if result["status"] == "failed" and logs:
            result["logs"] = str(keep_logs(Path(logs), host_dir, stdout, stderr))
        if job.kind == "run" and result["status"] == "ok":
            import numpy as np

            device.pull(f"{remote}/{job.outputs}", str(host_dir / "outputs.npy"))
            result["outputs"] = np.load(host_dir / "outputs.npy", allow_pickle=False)
        return result
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)
        if clean:
            _remove_remote(device, remote)


def _localize(text: str, job_dir: str | None, remote: str, by_name: dict[str, Path]) -> str:
    """A worker's message names files by their place on the device; name them as the host knows them."""
    for name, local in by_name.items():
        for folder in filter(None, (job_dir, remote)):
            text = text.replace(f"{folder}/{name}", str(local))
    return text


def _remove_remote(device: Device, remote: str) -> None:
    """The job folder on the device, removed with the device's own python (every driver has one)."""
    device.exec([*device_python(device), "-c", "import shutil, sys; shutil.rmtree(sys.argv[1], True)", remote],
                timeout=60)
