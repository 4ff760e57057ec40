"""Channel pruning of IResNet-18: MACs and measured latency of the pruned model vs the dense one.

The dense r18 (112x112, trained 2 steps, as every script here) is pruned by ``fcbench prune --method channel
--ratio R`` once per ``--round-to`` value, each pruned checkpoint converted to ONNX and OpenVINO IR by
``fcbench convert``, and every model timed through ``fcbench bench`` on ONNX Runtime (cpu) and OpenVINO f32
(the ``ort-cpu`` and ``openvino-f32`` profiles), dense and pruned interleaved (A,B,B,A...). Reported: params
and MACs ratios (from the checkpoints) and the latency ratio pruned/dense per backend (medians over
repetitions of p50).

Each backend is also timed A/B, as ``fcbench compare A B`` times two artifacts: ``--ab-reps`` bench workers,
each timing every model *in turn* (a tenth of a second each, round after round; the models loaded in the other
order every other worker), and per pruned model the ratio to the dense one is the Hodges-Lehmann estimate of
the rounds' ratios over those workers with its 95 % interval (``fcbench.compare.stats.compare_ab``). A slow
minute then slows both sides of a ratio alike, which separate cells cannot promise; the target is read from
these. Target (P3): at ratio 0.5, MACs <= 0.26x and latency <= 0.30x on both backends.

``--prelu-relu-bn`` also converts every model with ``--opt onnx.prelu=relu-bn`` (each PReLU as Relu +
BatchNormalization + Add, which ONNX Runtime keeps in its NCHWc layout) and times those on ort-cpu too
(column ``ort-cpu relu-bn``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _common import Run, artifacts, busy_note, fcbench_cell, interleaved, markdown, median, parse, parser, workdir

# column -> (backend profile, format)
BACKENDS = {"ort-cpu": ("ort-cpu", "onnx"), "openvino-f32": ("openvino-f32", "openvino")}
RELU_BN = {"ort-cpu relu-bn": ("ort-cpu", "onnx-relu-bn")}
SUFFIX = {"onnx": ".onnx", "openvino": ".xml"}


def _relu_bn(ckpt: Path) -> Path:
    """Where the relu-bn ONNX of ``ckpt`` goes."""
    return ckpt.parent / "relu-bn" / ckpt.with_suffix(".onnx").name


def _convert(ckpt: Path, relu_bn: bool) -> None:
    import fcbench

    missing = [f for f, s in SUFFIX.items() if not ckpt.with_suffix(s).exists()]
    jobs = [(missing, None, {})] if missing else []
    if relu_bn and not _relu_bn(ckpt).exists():
        jobs.append((["onnx"], str(_relu_bn(ckpt).parent), {"onnx": {"prelu": "relu-bn"}}))
    for to, out, options in jobs:
        result = fcbench.convert(checkpoint=str(ckpt), to=to, out=out, options=options)
        bad = [f"{o.format}: {o.status} {o.reason}" for o in result.outcomes if o.status != "ok"]
        if bad:
            raise SystemExit("conversion failed: " + "; ".join(bad))


def _prepare_pruned(dense: Path, out: Path, ratio: float, round_to: int, relu_bn: bool) -> None:
    """Child process: prune and convert (the measuring process never runs an exporter)."""
    import fcbench

    if not out.exists():
        fcbench.prune(checkpoint=str(dense), method="channel", ratio=ratio, round_to=round_to, out=str(out))
    _convert(out, relu_bn)


def _ratios(dense: Path, pruned: Path) -> tuple[float, float]:
    from fcbench.models import profile
    from fcbench.training.checkpoint import load_checkpoint

    def prof(p: Path) -> dict:
        m = load_checkpoint(p).build_model()
        return profile(m, input_size=tuple(m.preprocessing.size))

    a, b = prof(dense), prof(pruned)
    return b["params"] / a["params"], b["macs"] / a["macs"]


def _ab(files: list[Path], backend: str, args, store: Path) -> list[dict]:
    """``--ab-reps`` workers timing every file in turn; per file after the first: its ratio to the first
    (A/B estimate over the workers) with the 95 % interval. The cells go into ``store`` as bench rows."""
    from fcbench.backends import expand
    from fcbench.benchmark.run import ab_run, cell_row, load_artifact, run_interleaved
    from fcbench.compare.stats import compare_ab
    from fcbench.options import BenchConfig
    from fcbench.results.context import RunContext
    from fcbench.results.store import Store

    cfg = BenchConfig(artifacts=[str(f) for f in files], backends=[backend], threads=args.threads,
                      warmup=args.warmup, runs=args.runs, min_seconds=args.seconds)
    items = [load_artifact(f, cfg) for f in files]
    (spec,) = expand([backend])
    runs: list[list] = []
    ctx = RunContext()
    for rep in range(args.ab_reps):
        # the files loaded in the other order every other worker, the cells put back in the files' order
        cells = run_interleaved(items if rep % 2 == 0 else items[::-1], spec, cfg, args.threads)
        if rep % 2:
            cells = cells[::-1]
        bad = [c for c in cells if c.status != "ok"]
        if bad:
            raise SystemExit(f"fcbench {backend} A/B: {bad[0].status}: {bad[0].reason}")
        with Store(store) as db:
            db.add_many([cell_row(ctx, c, m, spec, cfg, args.threads) for c, (_, m) in zip(cells, items, strict=True)])
        runs.append(cells)
    out = []
    for k in range(1, len(items)):
        s = compare_ab([ab_run(r[0], r[k]) for r in runs])
        out.append({"ratio": s.ratio, "lo": s.ci_low, "hi": s.ci_high, "rounds": s.rounds,
                    "per_worker": [r[k].stats.p50_ms / r[0].stats.p50_ms for r in runs]})
    return out


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--ratio", type=float, default=0.5, help="fraction of channels removed (default 0.5)")
    p.add_argument("--round-to", default="1,8,16", help="comma-separated --round-to values to try (default 1,8,16)")
    p.add_argument("--prelu-relu-bn", action="store_true",
                   help="also time ONNX files converted with --opt onnx.prelu=relu-bn on ort-cpu")
    p.add_argument("--ab-reps", type=int, default=3,
                   help="bench workers timing all models in turn per backend, for the A/B ratios (default 3)")
    args = parse(p)
    if args.ab_reps < 1:
        p.error(f"--ab-reps is {args.ab_reps}; the A/B ratios need at least 1 worker per backend")
    run = Run(args)
    root = workdir(args)
    dense = artifacts(root, args.quick)
    backends = {**BACKENDS, **(RELU_BN if args.prelu_relu_bn else {})}
    if args.prelu_relu_bn:
        subprocess.run([sys.executable, __file__, "convert-relu-bn", str(dense["pytorch"])], check=True)
    models: dict[str, dict[str, Path]] = {"dense": {**{f: dense[f] for f in SUFFIX},
                                                    "onnx-relu-bn": _relu_bn(dense["pytorch"])}}
    ratios: dict[str, tuple[float, float]] = {"dense": (1.0, 1.0)}
    for n in [int(v) for v in args.round_to.split(",") if v.strip()]:
        name = f"pruned {args.ratio:g}, round-to {n}"
        ckpt = dense["pytorch"].with_name(f"pruned-{args.ratio:g}-r{n}.pt")
        cmd = [sys.executable, __file__, "prepare", str(dense["pytorch"]), str(ckpt), str(args.ratio), str(n),
               "1" if args.prelu_relu_bn else "0"]
        subprocess.run(cmd, check=True)
        models[name] = {**{f: ckpt.with_suffix(s) for f, s in SUFFIX.items()}, "onnx-relu-bn": _relu_bn(ckpt)}
        ratios[name] = _ratios(dense["pytorch"], ckpt)
    store = root / "bench.sqlite"
    rows = []
    p50: dict[tuple[str, str], float] = {}
    for column, (backend, fmt) in backends.items():
        fns = {name: (lambda f=files[fmt], b=backend: {"p50": fcbench_cell(f, b, args, store).stats.p50_ms})
               for name, files in models.items()}
        res = interleaved(fns, args)
        print(f"{column}: {busy_note(res)}")
        for name in models:
            p50[(name, column)] = median([r["p50"] for r in res[name]])
    ab: dict[tuple[str, str], dict] = {}
    for column, (backend, fmt) in backends.items():
        names = list(models)
        for name, r in zip(names[1:], _ab([models[n][fmt] for n in names], backend, args, store), strict=True):
            ab[(name, column)] = r
        print(f"{column} A/B, {args.ab_reps} workers: " + "; ".join(
            f"{n}: per worker " + ", ".join(f"{x:.3f}" for x in ab[(n, column)]["per_worker"]) for n in names[1:]))
    for name in models:
        row = {"model": name, "params x": ratios[name][0], "MACs x": ratios[name][1]}
        for column in backends:
            row[f"{column} p50 ms"] = p50[(name, column)]
            row[f"{column} x"] = p50[(name, column)] / p50[("dense", column)]
            a = ab.get((name, column))
            row[f"{column} A/B x"] = f"{a['ratio']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}]" if a else "1"
        rows.append(row)
    cols = ["model", "params x", "MACs x"] + [c for b in backends for c in (f"{b} p50 ms", f"{b} x", f"{b} A/B x")]
    print()
    print(markdown(rows, cols))
    if args.prelu_relu_bn:
        print("\nrelu-bn / PRelu ONNX on ort-cpu, same model: " + ", ".join(
            f"{name} {p50[(name, 'ort-cpu relu-bn')] / p50[(name, 'ort-cpu')]:.3f}x" for name in models))
    pruned = [r for r in rows if r["model"] != "dense"]
    if pruned:
        best = {b: min(ab[(r["model"], b)]["ratio"] for r in pruned) for b in backends}
        macs = min(r["MACs x"] for r in pruned)
        print(f"\ntarget (ratio 0.5): MACs <= 0.26x -> {macs:.3f}x {'met' if macs <= 0.26 else 'NOT met'}; "
              + "; ".join(f"{b} latency (A/B) <= 0.30x -> best {x:.3f}x {'met' if x <= 0.30 else 'NOT met'}"
                          for b, x in best.items()))
    run.end()


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:
        _prepare_pruned(Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]),
                        sys.argv[6] == "1")
    elif sys.argv[1:2] == ["convert-relu-bn"]:
        _convert(Path(sys.argv[2]), relu_bn=True)
    else:
        main()
