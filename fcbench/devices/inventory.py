"""The device inventory: one ``NAME.toml`` per device the user owns, found like backend profiles.

Search path (first file of a name wins): ``$FCBENCH_DEVICES``, ``./devices`` in the working directory,
then the examples shipped in fcbench (``fcbench/devices/profiles/``). A profile names its ``driver``
(``local``, ``ssh`` or ``adb``: a plugin of the ``fcbench.devices`` entry-point group) and how to reach the
device; :func:`open_device` makes the driver from it.

Keys (unknown keys are refused, naming the valid ones; a ``password`` is refused: keys only)::

    driver = "ssh"                 # local | ssh | adb (or another fcbench.devices plugin)
    description = "Raspberry Pi 4" # free text, shown by `fcbench devices list`
    # ssh: an alias of ~/.ssh/config, or host/port/user/key
    host = "rpi4"
    port = 22
    user = "pi"
    key = "~/.ssh/id_ed25519"
    ssh_options = ["StrictHostKeyChecking=accept-new"]
    # adb: a serial, or host:port for adb over TCP
    serial = "abcd1234"
    arch = "aarch64"               # expected: uname -m (ssh), ro.product.cpu.abi (adb: arm64-v8a)
    workdir = "fcbench-work"       # on the device; relative to the login's home (ssh) or absolute
    python = "~/fcbench/bin/python" # ssh/local: the interpreter with fcbench and the runtimes
    backends = ["ort-cpu", "tflite-xnnpack"]  # backend profiles this device offers
    [tools]                        # adb: native benchmark tools on the device
    benchmark_model = "/data/local/tmp/benchmark_model"
    [measure]
    affinity = "auto"              # taskset mask (hex), "auto" (the big cores) or "none"
    cooldown_s = 0                 # sleep between cells
    max_temp_c = 0                 # wait (up to cooldown_max_s) while hotter; 0: do not wait
    cooldown_max_s = 120
    timeout_s = 600                # per cell
    retries = 1                    # a failed cell is run once more
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from fcbench.errors import FcbenchError, suggest

DRIVERS_BUILTIN = ("local", "ssh", "adb")
_MEASURE_DEFAULTS = {"affinity": "auto", "cooldown_s": 0.0, "max_temp_c": 0.0, "cooldown_max_s": 120.0,
                     "timeout_s": 600.0, "retries": 1}
_SECRET_KEYS = ("password", "passphrase", "pass", "secret")


@dataclass
class Measure:
    affinity: str = "auto"
    cooldown_s: float = 0.0
    max_temp_c: float = 0.0
    cooldown_max_s: float = 120.0
    timeout_s: float = 600.0
    retries: int = 1


@dataclass
class DeviceProfile:
    """A device from the inventory. ``location`` is the TOML file it came from (for messages)."""

    name: str
    driver: str
    location: str = ""
    origin: str = ""
    description: str = ""
    host: str | None = None
    port: int | None = None
    user: str | None = None
    key: str | None = None
    ssh_options: list[str] = field(default_factory=list)
    serial: str | None = None
    arch: str | None = None
    workdir: str | None = None
    python: str | None = None
    backends: list[str] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)
    measure: Measure = field(default_factory=Measure)

    def where(self) -> str:
        """How the device is reached, for messages: ``user@host:port``, the adb serial, or ``this machine``."""
        if self.driver == "adb":
            return f"adb serial {self.serial}" if self.serial else "the only adb device"
        if self.driver == "ssh":
            at = f"{self.user}@" if self.user else ""
            return f"{at}{self.host}" + (f":{self.port}" if self.port else "")
        return "this machine"

    def offers(self, spec: Any) -> bool:
        """Whether the profile offers backend ``spec`` (a BackendSpec): listed by its profile name, its plugin, or
        a name that resolves to the same plugin and variant; an empty list offers everything."""
        if not self.backends:
            return True
        from fcbench.backends import expand

        for name in self.backends:
            if name in (spec.label, spec.plugin):
                return True
            try:
                if any((s.plugin, s.variant) == (spec.plugin, spec.variant) for s in expand([name])):
                    return True
            except FcbenchError:
                continue
        return False

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("measure", "location", "origin")}
        out["measure"] = vars(self.measure).copy()
        return {k: v for k, v in out.items() if v not in (None, [], {}, "")}


_KEYS = [f.name for f in fields(DeviceProfile) if f.name not in ("name", "location", "origin")]


def _bad(location: str, what: str) -> FcbenchError:
    return FcbenchError(f"device profile {location}: {what}")


def parse_profile(name: str, doc: dict[str, Any], location: str = "", origin: str = "") -> DeviceProfile:
    """A profile from its parsed TOML; every problem is one line naming the file and the key."""
    loc = location or name
    for k in doc:
        if k.lower() in _SECRET_KEYS:
            raise _bad(loc, f"'{k}': fcbench never reads a password from a file; use a key (key = \"~/.ssh/id_ed25519\""
                            ", or an alias in ~/.ssh/config) for ssh, nothing for adb")
        if k not in _KEYS:
            raise _bad(loc, f"unknown key '{k}'{suggest(k, _KEYS)}; valid keys: {', '.join(_KEYS)}")
    driver = doc.get("driver")
    if not isinstance(driver, str) or not driver:
        raise _bad(loc, "'driver' is required: local, ssh or adb")
    from fcbench.plugins import names as plugin_names

    drivers = sorted({*DRIVERS_BUILTIN, *plugin_names("device")})
    if driver not in drivers:
        raise _bad(loc, f"unknown device driver '{driver}'{suggest(driver, drivers)}; drivers: {', '.join(drivers)}")
    prof = DeviceProfile(name=name, driver=driver, location=loc, origin=origin)
    for k in ("description", "host", "user", "key", "serial", "arch", "workdir", "python"):
        if k in doc:
            if not isinstance(doc[k], str):
                raise _bad(loc, f"'{k}' must be a string, got {doc[k]!r}")
            setattr(prof, k, doc[k])
    if "port" in doc:
        if not isinstance(doc["port"], int) or not 0 < doc["port"] < 65536:
            raise _bad(loc, f"'port' must be a port number (1-65535), got {doc['port']!r}")
        prof.port = doc["port"]
    for k in ("ssh_options", "backends"):
        if k in doc:
            if not isinstance(doc[k], list) or not all(isinstance(v, str) for v in doc[k]):
                raise _bad(loc, f"'{k}' must be a list of strings, got {doc[k]!r}")
            setattr(prof, k, list(doc[k]))
    if "tools" in doc:
        if not isinstance(doc["tools"], dict) or not all(isinstance(v, str) for v in doc["tools"].values()):
            raise _bad(loc, "[tools] must map a tool's name to its path on the device")
        prof.tools = dict(doc["tools"])
    if "measure" in doc:
        m = doc["measure"]
        if not isinstance(m, dict):
            raise _bad(loc, "[measure] must be a table")
        for k, v in m.items():
            if k not in _MEASURE_DEFAULTS:
                raise _bad(loc, f"unknown key 'measure.{k}'{suggest(k, list(_MEASURE_DEFAULTS))}; valid: "
                                f"{', '.join(_MEASURE_DEFAULTS)}")
            want = type(_MEASURE_DEFAULTS[k])
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, want) or isinstance(v, bool) or (want is not str and v < 0):
                raise _bad(loc, f"'measure.{k}' must be a non-negative {want.__name__}, got {v!r}")
            setattr(prof.measure, k, v)
        aff = prof.measure.affinity
        if aff not in ("auto", "none"):
            try:
                int(aff, 16)
            except ValueError:
                raise _bad(loc, f"'measure.affinity' must be auto, none or a hex CPU mask (e.g. f0), got {aff!r}"
                           ) from None
    if driver == "ssh" and not prof.host:
        raise _bad(loc, "an ssh device needs 'host' (a hostname, an address or an alias in ~/.ssh/config)")
    return prof


def profiles() -> dict[str, DeviceProfile]:
    """Every device of the inventory by name (the first of a name in the search path)."""
    from fcbench.profiles import find

    return {name: parse_profile(name, pf.read(), pf.location, pf.origin) for name, pf in find("devices").items()}


def load_device_profile(name: str) -> DeviceProfile:
    """The named device's profile; an unknown name lists the known ones."""
    from fcbench.profiles import describe_search_path, find

    found = find("devices")
    if name not in found:
        known = sorted(found)
        raise FcbenchError(f"unknown device '{name}'{suggest(name, known)}; known devices: {', '.join(known)} "
                           f"(looked in {describe_search_path('devices')}; add NAME.toml to ./devices)")
    pf = found[name]
    return parse_profile(name, pf.read(), pf.location, pf.origin)


def expand_devices(text: str | list[str]) -> list[str]:
    """``a,b`` or ``all`` (every device of the inventory but the examples that ship with fcbench and cannot be
    reached as they are) into names, checked against the inventory."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if names == ["all"]:
        found = profiles()
        return [n for n, p in found.items() if p.origin != "builtin" or p.driver == "local"]
    for n in names:
        load_device_profile(n)
    return list(dict.fromkeys(names))


def driver_class(name: str) -> Any:
    """The driver class of the ``fcbench.devices`` plugin ``name``."""
    from fcbench.plugins import load

    return load("device", name)


def open_device(profile: DeviceProfile | str) -> Any:
    """The driver for ``profile`` (or a device name), made from its profile (``Driver.from_profile``)."""
    prof = load_device_profile(profile) if isinstance(profile, str) else profile
    cls = driver_class(prof.driver)
    dev = cls.from_profile(prof)
    dev.profile = prof
    return dev
