"""Bench on devices from the inventory: ``fcbench bench ART --device a,b`` (or ``--device all``).

Devices run concurrently (one thread each: the work is waiting on ssh or adb), the cells of one device one
after another. Per cell, on the device:

- the backend must take the artifact's format and be one the profile offers (``backends``; empty: any);
  whether the runtime is *installed* is the device's answer (the worker's ``skipped``), not this machine's;
- before the cell: wait while the device is hotter than ``measure.max_temp_c`` (polling, at most
  ``measure.cooldown_max_s``); between cells: sleep ``measure.cooldown_s``;
- the cell runs with the CPU affinity of ``measure.affinity`` (``auto``: the cores with the highest maximum
  frequency, when the device has faster and slower ones; a hex mask; ``none``), through the bench worker
  (local, ssh) or the runtime's native tool (adb: ``device.bench_native``), within ``measure.timeout_s``;
  a failed cell is run ``measure.retries`` more time(s);
- the temperature before and after, the affinity and the attempts go into the row (``extra``); a cell whose
  device ended hotter than ``max_temp_c`` is marked ``hot``.

A device that cannot be opened or stops answering: the cells it did keep their rows, the rest are failed
cells naming the device and why; the other devices go on. Each finished cell is handed to the hooks by the
calling thread as it arrives (the CLI stores it at once), so a crash loses nothing already measured.
"""

from __future__ import annotations

import queue
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fcbench.errors import FcbenchError, first_line


def big_cores_mask(info: dict[str, Any]) -> str | None:
    """The hex mask of the cores with the highest ``cpu_max_khz`` when the device has cores of two or more
    speeds (big.LITTLE); None when all cores are alike or the kernel did not say."""
    khz = info.get("cpu_max_khz") or {}
    if isinstance(khz, list):
        khz = dict(enumerate(khz))
    speeds = {int(c): int(f) for c, f in khz.items() if f}
    if len(set(speeds.values())) < 2:
        return None
    top = max(speeds.values())
    mask = sum(1 << c for c, f in speeds.items() if f == top)
    return f"{mask:x}"


def affinity_for(setting: str, info: dict[str, Any]) -> str | None:
    if setting == "none":
        return None
    if setting == "auto":
        return big_cores_mask(info)
    return setting.lower().removeprefix("0x")


def _temperature(device: Any) -> float | None:
    try:
        t = device.info().get("temperature_c")
    except Exception:  # a device that does not answer: the cell will say so
        return None
    return float(t) if isinstance(t, (int, float)) else None


class _DeviceLost(Exception):
    pass


def device_cell(device: Any, profile: Any, info: dict[str, Any], path: Path, manifest: Any, spec: Any, cfg: Any,
                threads: int, hooks: Any) -> Any:
    """One cell on ``device`` (see the module doc); returns the filled ``Cell``."""
    from fcbench.backends import get_backend
    from fcbench.benchmark.run import Cell, _cell_from_raw, _measure_on_device, artifact_size_mb, cell_options

    cell = Cell(artifact=str(path), format=manifest.format, backend=spec.label, status="skipped")
    try:
        backend = get_backend(spec.plugin)
    except FcbenchError as exc:
        cell.reason = str(exc)
        return cell
    if manifest.format not in backend.formats:
        cell.reason = f"{spec.label} does not load {manifest.format} files (it loads {', '.join(backend.formats)})"
        return cell
    if not profile.offers(spec):
        cell.reason = f"device {profile.name} does not offer {spec.label} (its profile's backends: " \
                      f"{', '.join(profile.backends)})"
        return cell
    options, why = cell_options(spec, backend, cfg)
    if why:
        cell.reason = why
        return cell
    cell.options = options
    cell.size_mb = artifact_size_mb(path, manifest)
    m = profile.measure
    mask = affinity_for(cfg.affinity or m.affinity, info)
    device.affinity = mask
    temp_before = _temperature(device)
    if m.max_temp_c and temp_before is not None and temp_before > m.max_temp_c:
        waited, t0 = 0.0, time.monotonic()
        while temp_before is not None and temp_before > m.max_temp_c and waited < m.cooldown_max_s:
            hooks.log(f"{profile.name}: {temp_before:.1f} C > {m.max_temp_c:g} C, waiting")
            time.sleep(min(5.0, m.cooldown_max_s - waited))
            waited = time.monotonic() - t0
            temp_before = _temperature(device)
    attempts, raw = 0, {}
    timeout = cfg.worker_timeout or m.timeout_s or None
    while attempts <= m.retries:
        attempts += 1
        try:
            if hasattr(device, "bench_native"):
                raw = device.bench_native(path, spec.plugin, spec.variant, threads, cfg.warmup, cfg.runs,
                                          cfg.min_seconds, mask, _logs(cfg, profile.name, path, spec),
                                          input_shape=list(manifest.inputs[0].shape), timeout=timeout)
                if raw.get("tool") and raw.get("status") == "ok":
                    raw["stats_from_tool"] = raw["tool"]
                raw.setdefault("machine", info)
                raw.setdefault("isolation", "native")
                raw.setdefault("device", profile.name)
            else:
                cfg_t = cfg if cfg.worker_timeout == timeout else _with_timeout(cfg, timeout)
                raw = _measure_on_device(path, manifest, spec, options, cfg_t, threads, device)
        except (FcbenchError, OSError) as exc:  # the driver could not push, run or pull
            raw = {"status": "failed", "reason": first_line(exc)}
        if raw.get("status") in ("ok", "skipped"):
            break
        if not _alive(device):
            raise _DeviceLost(f"device {profile.name} ({profile.where()}) stopped answering during {path.name} "
                              f"on {spec.label}: {raw.get('reason', '')}")
    raw["device"] = profile.name
    cell = _cell_from_raw(cell, raw, manifest, spec, backend, cfg, threads)
    temp_after = _temperature(device)
    cell.extra.update({"device": profile.name, "attempts": attempts})
    if raw.get("stats_from_tool"):
        cell.extra["stats_from"] = raw["stats_from_tool"]
    if mask:
        cell.extra["affinity"] = mask
    if temp_before is not None:
        cell.extra["temp_before_c"] = temp_before
    if temp_after is not None:
        cell.extra["temp_after_c"] = temp_after
        if m.max_temp_c and temp_after > m.max_temp_c:
            cell.extra["hot"] = True
    return cell


def _with_timeout(cfg: Any, timeout: float | None) -> Any:
    from dataclasses import replace

    return replace(cfg, worker_timeout=timeout)


def _alive(device: Any) -> bool:
    try:
        rc, _, _ = device.exec(["true"], timeout=30)
    except Exception:
        return False
    return rc == 0


def _logs(cfg: Any, device: str, path: Path, spec: Any) -> Path:
    from fcbench.benchmark.run import _worker_logs

    p = _worker_logs(cfg, path, spec)
    return p.with_name(f"{device}-{p.name}")


def bench_on_devices(cfg: Any, loaded: list[tuple[Path, Any]], specs: list[Any], ctx: Any, hooks: Any,
                     result: Any, threads: int) -> Any:
    """Every (artifact x backend) cell on every device of ``cfg.device``; rows into ``result`` and the hooks."""
    from fcbench.benchmark.run import Cell, cell_row
    from fcbench.devices.fingerprint import fingerprint
    from fcbench.devices.inventory import expand_devices, load_device_profile, open_device

    names = expand_devices(cfg.device)
    pairs = [(p, m, s) for p, m in loaded for s in specs]
    # device threads -> this thread: ("cell", ...), ("log", text), ("progress", (device, done, total, info)),
    # ("done", name); only this thread stores rows and draws progress (a bar per device on the CLI)
    inbox: queue.Queue = queue.Queue()

    class _Log:  # what device_cell logs goes through the inbox too
        @staticmethod
        def log(text: str) -> None:
            inbox.put(("log", text))

    def emit(cell: Any, manifest: Any, spec: Any, profile: Any, info: dict[str, Any]) -> None:
        inbox.put(("cell", (cell, manifest, spec, profile, info)))

    def deliver(cell: Any, manifest: Any, spec: Any, profile: Any, info: dict[str, Any]) -> None:
        result.cells.append(cell)
        if cell.status != "skipped":
            row = cell_row(ctx, cell, manifest, spec, cfg, threads)
            row.device = profile.name
            if info.get("emulated"):  # e.g. qemu-user: the times mean nothing
                row.extra["emulated"] = info["emulated"]
            if not row.device_info and info:
                row.device_info = {k: v for k, v in info.items() if k != "fingerprint"}
                row.device_fingerprint = info.get("fingerprint") or fingerprint(info)
            result.rows.append(row)
            hooks.rows([row])
        hooks.event("cell", cell)

    def failed(path: Path, manifest: Any, spec: Any, reason: str) -> Any:
        return Cell(artifact=str(path), format=manifest.format, backend=spec.label, status="failed", reason=reason)

    def one_device(name: str) -> dict[str, Any]:
        profile = load_device_profile(name)
        t0 = time.monotonic()
        done = 0
        try:
            device = open_device(profile)
            info = device.info()
        except Exception as exc:  # unreachable: every cell of this device fails, saying why
            reason = f"device {name} ({profile.where()}): {first_line(exc)}"
            _Log.log(reason)
            for path, manifest, spec in pairs:
                emit(failed(path, manifest, spec, reason), manifest, spec, profile, {})
            inbox.put(("progress", (name, len(pairs), len(pairs), "unreachable")))
            return {"device": name, "cells": 0, "seconds": time.monotonic() - t0, "error": reason}
        lost = None
        try:
            for i, (path, manifest, spec) in enumerate(pairs):
                if lost:
                    emit(failed(path, manifest, spec, lost), manifest, spec, profile, info)
                    continue
                if i and profile.measure.cooldown_s:
                    time.sleep(profile.measure.cooldown_s)
                _Log.log(f"{name}: {path.name} on {spec.label} ({i + 1}/{len(pairs)})")
                inbox.put(("progress", (name, i, len(pairs), f"{path.name} on {spec.label}")))
                try:
                    cell = device_cell(device, profile, info, path, manifest, spec, cfg, threads, _Log)
                except _DeviceLost as exc:
                    lost = str(exc)
                    _Log.log(lost)
                    emit(failed(path, manifest, spec, lost), manifest, spec, profile, info)
                    continue
                emit(cell, manifest, spec, profile, info)
                done += 1
        finally:
            inbox.put(("progress", (name, len(pairs), len(pairs), f"lost: {lost}" if lost else "done")))
            try:
                device.cleanup()
            except Exception:  # a lost device cannot be cleaned; said above
                pass
        return {"device": name, "cells": done, "seconds": time.monotonic() - t0, **({"error": lost} if lost else {})}

    def run_one(name: str) -> dict[str, Any]:
        try:
            return one_device(name)
        finally:
            inbox.put(("done", name))

    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        futures = [pool.submit(run_one, n) for n in names]
        running = len(names)
        while running:
            what, payload = inbox.get()
            if what == "cell":
                deliver(*payload)
            elif what == "log":
                hooks.log(payload)
            elif what == "progress":
                device, done, total, info = payload
                hooks.progress(f"device {device}", done, total, info)
            else:
                running -= 1
        result.devices = [f.result() for f in futures]
    return result
