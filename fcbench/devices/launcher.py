"""The ``__main__.py`` of the fcbench zip a remote driver pushes (stdlib only; runs on the device).

``python fcbench-HASH.zip ARGS`` acts as ``python ARGS`` with fcbench importable from the zip
(``sys.path[0]`` is the zip when python runs it): ``-m MODULE ...`` and ``-c CODE ...`` run in this
process; any other form re-executes python with the zip on ``PYTHONPATH``. So a device needs only
python3, numpy and the runtime: fcbench itself comes with the job.

Before the bench worker (``-m fcbench.worker JOB OUT``) starts, numpy and the job's runtime are
looked up (not imported): a device without them gets a failed cell whose reason names the package
and the one command that installs it there, instead of a traceback.
"""

from __future__ import annotations

import json
import os
import runpy
import sys

ZIP = sys.path[0]
PIP_NAMES = {"cv2": "opencv-python-headless", "ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}


def _missing(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def _hint(module: str) -> str:
    top = module.split(".")[0]
    pkg = PIP_NAMES.get(top, top)
    return (f"python package '{pkg}' is not installed for {sys.executable} on this device; install it there with: "
            f"{sys.executable} -m pip install {pkg}")


def _fail(out: str, reason: str) -> None:
    result = {"status": "failed", "reason": reason, "kind": None, "job_dir": os.path.dirname(os.path.abspath(out))}
    try:
        from fcbench.devices.fingerprint import machine_info

        result["machine"] = machine_info()
    except Exception:  # the reason matters more than the machine
        pass
    with open(out + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(out + ".tmp", out)
    sys.exit(0)


def precheck_worker(args: list[str]) -> None:
    """numpy and the job's runtime present, or a failed result in OUT naming what to install."""
    if len(args) != 2:
        return  # the worker prints its usage
    job_file, out = args
    if _missing("numpy"):
        _fail(out, _hint("numpy"))
    try:
        with open(job_file) as f:
            plugin = json.load(f).get("plugin")
        from fcbench.plugins import load

        module = getattr(load("backend", plugin), "module", "")
    except Exception:  # a bad job or an unknown plugin: the worker says so itself
        return
    if module and _missing(module):
        _fail(out, _hint(module))


def main() -> None:
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "-m":
        module, rest = args[1], args[2:]
        if module == "fcbench.worker":
            precheck_worker(rest)
        sys.argv = [module, *rest]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    elif len(args) >= 2 and args[0] == "-c":
        sys.argv = ["-c", *args[2:]]
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
    else:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (ZIP, env.get("PYTHONPATH"))))
        os.execve(sys.executable, [sys.executable, *args], env)


if __name__ == "__main__":
    main()
