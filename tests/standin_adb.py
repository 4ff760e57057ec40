"""A stand-in for the ``adb`` client that stands in for a phone: no phone and no adbd exist on the machines
the tests run on, so tests put this script first on PATH, named ``adb``, to drive fcbench's adb driver end
to end. It answers what the driver uses, in adb's own wording:

- ``devices``, ``-s S get-state``, ``connect HOST:PORT``, ``push``, ``pull``, ``shell CMD``;
- the "phone's" filesystem is a sandbox folder (``$STANDIN_ADB_ROOT``): ``/data/``, ``/sys/`` and ``/proc/``
  in paths and shell commands map into it, and ``$ROOT/system/bin`` (``getprop``, ``dumpsys``, ``taskset``
  and the "native tools", scripts that print a fixture) comes first on the shell's PATH;
- ``$STANDIN_ADB_DEVICES``: ``serial=state,...`` (``device``, ``unauthorized``, ``offline``);
- ``shell`` behaves like an old adb (no shell protocol): stderr goes with stdout and the exit status is
  always 0, so the driver must read the command's status from its own marker;
- ``$STANDIN_ADB_VANISH_ON``: when a shell command contains this text, the device disappears halfway
  through its output (``error: device 'S' not found``, exit 1), and stays gone;
- every call is appended to ``$ROOT/calls.jsonl`` so tests can count them.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(os.environ["STANDIN_ADB_ROOT"])
_MAP = re.compile(r"(?<![\w.~-])/(data|sys|proc)/")


def phone_path(path: str) -> str:
    return _MAP.sub(lambda m: f"{ROOT}/{m.group(1)}/", path)


def devices() -> dict[str, str]:
    if (ROOT / ".gone").exists():
        return {}
    spec = os.environ.get("STANDIN_ADB_DEVICES", "")
    return dict(item.split("=", 1) for item in spec.split(",") if "=" in item)


def fail(line: str, rc: int = 1) -> None:
    sys.stderr.write(line + "\n")
    sys.exit(rc)


def main(argv: list[str]) -> None:
    with open(ROOT / "calls.jsonl", "a") as log:
        log.write(json.dumps(argv) + "\n")
    serial = None
    while argv and argv[0] in ("-s", "-t", "-H", "-P"):
        if argv[0] == "-s":
            serial = argv[1]
        argv = argv[2:]
    if not argv:
        fail("adb: usage: no command specified")
    cmd, args = argv[0], argv[1:]
    known = devices()
    if cmd == "devices":
        print("List of devices attached")
        for s, state in known.items():
            print(f"{s}\t{state}")
        print()
        return
    if cmd == "connect":
        target = args[0] if args else ""
        if target in known:
            print(f"already connected to {target}")
            return
        print(f"failed to connect to '{target}': Connection refused")  # real adb exits 0 here
        return
    # every other command needs one device
    if serial is None:
        if not known:
            fail("error: no devices/emulators found")
        if len(known) > 1:
            fail("error: more than one device/emulator")
        serial = next(iter(known))
    if serial not in known:
        fail(f"error: device '{serial}' not found")
    state = known[serial]
    if state == "unauthorized":
        fail("error: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
             "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation dialog on your device.")
    if state == "offline":
        fail("error: device offline")
    if cmd == "get-state":
        print(state)
        return
    if cmd == "push":
        src, dst = Path(args[0]), phone_path(args[1])
        if dst.endswith("/"):
            dst += src.name
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, dst)
        size = src.stat().st_size
        print(f"{src}: 1 file pushed, 0 skipped. 12.3 MB/s ({size} bytes in 0.001s)")
        return
    if cmd == "pull":
        src, dst = phone_path(args[0]), args[1]
        if not os.path.exists(src):
            fail(f"adb: error: failed to stat remote object '{args[0]}': No such file or directory")
        shutil.copyfile(src, dst)
        print(f"{args[0]}: 1 file pulled, 0 skipped. 10.1 MB/s (1 bytes in 0.001s)")
        return
    if cmd == "shell":
        script = phone_path(" ".join(args))
        env = dict(os.environ, PATH=f"{ROOT}/system/bin:{os.environ.get('PATH', '')}", STANDIN_SERIAL=serial)
        p = subprocess.run(["sh", "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        vanish = os.environ.get("STANDIN_ADB_VANISH_ON")
        if vanish and vanish in script:
            lines = p.stdout.splitlines(True)
            sys.stdout.write("".join(lines[:len(lines) // 2]))
            sys.stdout.flush()
            (ROOT / ".gone").touch()
            fail(f"error: device '{serial}' not found")
        sys.stdout.write(p.stdout)
        return  # an old adb: the command's own status is not forwarded
    fail(f"adb: unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
