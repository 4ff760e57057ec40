"""``fcbench devices list`` and ``fcbench devices check NAME``: the inventory, and what a device can run.

``check`` opens the device through its driver and reads, as far as the device tells: reachable or not (one
line naming the address and what to check), arch (against the profile's), OS, CPU model, cores and their
maximum frequencies (big and little cores), governor, temperature, battery (phones), and for each backend the
profile offers whether it can run there, with the reason when it cannot and the runtime's version when it can.
A driver that knows its own way (adb: the native tools on the phone) gives ``device.probe(specs)``; the others
run ``python -m fcbench.worker --probe`` on the device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fcbench.errors import FcbenchError, first_line

ACTIONS = ("list", "check")


@dataclass
class DevicesResult:
    action: str
    devices: list[dict[str, Any]] = field(default_factory=list)  # list: one dict per profile
    checks: list[dict[str, Any]] = field(default_factory=list)  # check: one dict per device checked

    def to_rows(self) -> list:
        return []

    def failures(self) -> list[str]:
        """Unreachable devices: each one line (the CLI then exits 1)."""
        return [f"device {c['name']} ({c['where']}): {c['reason']}" for c in self.checks if not c.get("reachable")]


def cores_text(info: dict[str, Any]) -> str:
    """``8 cores: 2 x 2.30 GHz + 6 x 1.80 GHz`` from ``cpu_max_khz`` (or just the count)."""
    khz = info.get("cpu_max_khz") or {}
    if isinstance(khz, list):
        khz = dict(enumerate(khz))
    n = info.get("cores") or len(khz) or None
    groups: dict[int, int] = {}
    for f in khz.values():
        if f:
            groups[int(f)] = groups.get(int(f), 0) + 1
    if not groups:
        return f"{n} cores" if n else "unknown"
    parts = " + ".join(f"{c} x {f / 1e6:.2f} GHz" for f, c in sorted(groups.items(), reverse=True))
    return f"{n} cores: {parts}"


def _backend_specs(names: list[str]) -> list[tuple[str, str]]:
    """(label, plugin:variant) of the profile's backends (profiles or plugin:variant)."""
    from fcbench.backends import expand

    out = []
    for name in names:
        for spec in expand([name]):
            out.append((spec.label, f"{spec.plugin}:{spec.variant}"))
    return out


def probe(device: Any, specs: list[str], timeout: float = 300) -> dict[str, Any]:
    """The device's answer to ``fcbench.worker --probe`` (or the driver's own ``probe``)."""
    if hasattr(device, "probe"):
        return device.probe(specs)
    if hasattr(device, "bench_native"):
        return _probe_native(device, specs, timeout)
    from fcbench.devices.runner import device_python

    rc, out, err = device.exec([*device_python(device), "-m", "fcbench.worker", "--probe", *specs], timeout=timeout)
    if rc != 0:
        last = [ln for ln in (err or out or "").splitlines() if ln.strip()]
        raise FcbenchError(f"the probe exited {rc} on the device: {last[-1] if last else 'no output'}")
    return json.loads(out.strip().splitlines()[-1])


def _probe_native(device: Any, specs: list[str], timeout: float) -> dict[str, Any]:
    """A device without Python (adb): each backend runs through its runtime's native tool; is the tool the
    profile names there and executable?"""
    import shlex

    from fcbench.devices import native

    tools = getattr(device, "tools", {}) or {}
    found: dict[str, str] = {}
    for tool, path in tools.items():
        rc, _, _ = device.exec(["sh", "-c", f"test -x {shlex.quote(path)}"], timeout=timeout)
        found[tool] = f"{path} ({'found' if rc == 0 else 'missing'})"
    out: dict[str, Any] = {}
    for text in specs:
        plugin, _, variant = text.partition(":")
        tool, why = native.tool_for(plugin, variant)
        if tool is None:
            out[text] = {"ok": False, "reason": why}
        elif tool not in tools:
            out[text] = {"ok": False, "tool": tool, "reason": f"needs {tool}: add [tools] {tool} = \"PATH\" to the "
                                                              "profile and push the binary there"}
        elif found[tool].endswith("(missing)"):
            out[text] = {"ok": False, "tool": tool, "reason": f"{tool} is not at {tools[tool]} on the device (or not "
                                                              "executable): push it there and chmod +x it"}
        else:
            out[text] = {"ok": True, "tool": tool, "reason": ""}
    return {"backends": out, "tools": found}


def check_device(name: str) -> dict[str, Any]:
    """One device's check (see the module doc); unreachable is a result (``reachable: False``), not an error."""
    from fcbench.devices.inventory import load_device_profile, open_device

    prof = load_device_profile(name)
    out: dict[str, Any] = {"name": name, "driver": prof.driver, "where": prof.where(), "profile": prof.location}
    try:
        device = open_device(prof)
        info = device.info()
    except Exception as exc:
        out.update(reachable=False, reason=first_line(exc))
        return out
    out.update(reachable=True, info=info, cores=cores_text(info))
    problems = []
    arch = info.get("arch") or info.get("abi")
    if prof.arch and arch and prof.arch not in (info.get("arch"), info.get("abi")):
        problems.append(f"the profile says arch {prof.arch}, the device reports {arch}")
    specs = _backend_specs(prof.backends)
    backends: list[dict[str, Any]] = []
    try:
        answer = probe(device, [s for _, s in specs]) if specs else {"backends": {}}
        for label, spec in specs:
            got = answer["backends"].get(spec, {"ok": False, "reason": "the device did not answer for it"})
            backends.append({"backend": label, "runs": bool(got.get("ok")), "reason": got.get("reason", ""),
                             "versions": got.get("versions") or {}, **({"tool": got["tool"]} if "tool" in got
                                                                         else {})})
        if answer.get("tools"):
            out["tools"] = answer["tools"]
    except Exception as exc:
        problems.append(f"could not ask which runtimes it has: {first_line(exc)}")
    finally:
        try:
            device.cleanup()
        except Exception:
            pass
    out["backends"] = backends
    out["problems"] = problems
    return out


def run_devices(cfg: Any, ctx: Any = None, hooks: Any = None) -> DevicesResult:
    from fcbench.devices.inventory import expand_devices, profiles

    action, *names = cfg.words
    if action not in ACTIONS:
        raise FcbenchError(f"devices: unknown action '{action}'; use: fcbench devices list, or fcbench devices "
                           "check NAME[,NAME...|all]")
    if action == "list":
        if names:
            raise FcbenchError("devices list takes no names; fcbench devices check NAME checks one")
        return DevicesResult("list", [{"name": p.name, "driver": p.driver, "where": p.where(), "origin": p.origin,
                                       "description": p.description, "backends": p.backends,
                                       "profile": p.location} for p in profiles().values()])
    if not names:
        raise FcbenchError("devices check: name the device(s), e.g. fcbench devices check localhost "
                           "(fcbench devices list shows them)")
    wanted = expand_devices(",".join(names))
    return DevicesResult("check", checks=[check_device(n) for n in wanted])
