"""Wall time of a two-device fleet (`bench --device a,b`) against the same two devices one after the other.

The two devices are real OpenSSH servers on loopback (started as the tests start them, from
``tests/sshd.py``), so both "devices" are this machine and share its cores: the ratio shows what running
devices at once saves in fcbench's own waiting (ssh round trips, pushes, worker start-up), not what two
real boards would give, where the cells do not compete for one CPU. One tiny r18 ONNX model, three
copies (three cells per device), ``--runs`` timed queries per cell, 1 thread.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--cells", type=int, default=3)
    p.add_argument("--workdir", default=None)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(REPO / "tests"))
    from sshd import start_sshd

    import fcbench
    from fcbench.quantization.why import cpu_flags

    root = Path(args.workdir or tempfile.mkdtemp(prefix="fcbench-fleet-"))
    ckpt = Path(fcbench.train(model="r18", model_options={"width": 0.125, "input_size": [32, 32]},
                              data="synthetic:faces", data_options={"num_classes": 8, "samples_per_class": 8},
                              epochs=1, batch_size=16, threads=1, out=str(root / "r18")).checkpoint)
    fcbench.convert(checkpoint=str(ckpt), to=["onnx"], out=str(root / "a0"))
    (onnx,) = (root / "a0").glob("*.onnx")
    arts = [onnx]
    for i in range(1, args.cells):
        d = root / f"a{i}"
        d.mkdir(exist_ok=True)
        for f in (root / "a0").iterdir():
            shutil.copy2(f, d / f.name)
        arts.append(d / onnx.name)
    servers = [start_sshd(root / "sshd-a"), start_sshd(root / "sshd-b")]
    try:
        (root / "devices").mkdir(exist_ok=True)
        for name, s in zip(("a", "b"), servers, strict=True):
            opts = ", ".join(f'"{o}"' for o in s.options())
            (root / "devices" / f"{name}.toml").write_text(
                f'driver = "ssh"\nhost = "{s.host}"\nport = {s.port}\nuser = "{s.user}"\nkey = "{s.key}"\n'
                f'ssh_options = [{opts}]\nworkdir = "{root / ("work-" + name)}"\npython = "{sys.executable}"\n')
        os.chdir(root)

        def run(devices: list[str]) -> float:
            t = time.perf_counter()
            res = fcbench.bench(artifacts=[str(a) for a in arts], backends=["ort-cpu"], device=devices,
                                runs=args.runs, warmup=2, min_seconds=0, threads=1)
            assert all(c.status == "ok" for c in res.cells), [c.reason for c in res.cells]
            return time.perf_counter() - t

        run(["a"])  # first session of each pushes fcbench's zip: not part of what is compared
        run(["b"])
        one_after_other = run(["a"]) + run(["b"])
        together = run(["a", "b"])
    finally:
        for s in servers:
            s.kill()
    name, _ = cpu_flags()
    print(f"CPU: {name}, {os.cpu_count()} cores; {args.cells} cells per device, {args.runs} runs each")
    print(f"a then b: {one_after_other:.1f} s; a and b at once: {together:.1f} s; "
          f"ratio {together / one_after_other:.2f}")


if __name__ == "__main__":
    main()
