"""How often ``fcbench compare`` cries wolf, and how often it catches a real slowdown.

1. Makes tiny-ish models (default r18, r34 and mbf, width 0.25, 64x64; each trained 2 steps on synthetic
   faces, since untrained IResNets have huge activations) and, for each, variants at a larger input size
   whose FLOPs are 5, 10 and 20 % more (fcbench's own profile picks the size): genuine slowdowns, more
   work on the same machine. Converts all of them to ONNX and OpenVINO IR with ``fcbench convert``.
2. Reruns the same artifacts ``--reruns`` times (default 20) through ``fcbench.bench`` (the subprocess
   bench worker, as ``fcbench bench`` runs it), every artifact on every backend (default onnxruntime:cpu
   and openvino:CPU) in each rerun, in a shuffled order, into a store under the workdir.
3. Compares, at the default threshold, every pair of reruns of the same artifact (false alarms: any
   verdict other than same/unknown) and every (base rerun, slowed rerun) pair (detection: slower), with
   ``fcbench.compare.compare_pair`` -- the function ``fcbench compare`` gives each matched row. Slowed
   variants have another input shape, so they are paired with their base explicitly here; matching by
   identity would (rightly) never pair them.

Prints the false-alarm rate, and per slowdown the measured latency ratio (pooled medians over all reruns:
FLOPs do not map exactly onto time) with the share of pairs called slower / unknown / same.
Targets (issue 18): false alarms <= 1 %, detection >= 95 % at 10 %. ``--quick``: 3 reruns of a tiny
setting, to check the script works (its rates mean little).

``--ab``: what ``fcbench compare A.onnx B.onnx`` does instead (both files timed now, in turn, in one worker).
Per rerun, model and backend, one fresh worker times the base, a second copy of the base and every slowed
variant in turn (``fcbench.benchmark.run.run_interleaved``, ``--seconds`` of timed calls each, by default
compare's ``--min-seconds``; every other rerun loads them in the reverse order, as ``compare --repeats`` does).
Consecutive reruns are grouped ``--pool`` at a time (default 3 and 5) into one compare, judged by
``fcbench.compare.stats.compare_ab`` at the default threshold: base vs its copy is a false-alarm trial, base vs
each slowed variant a detection trial; single runs are judged too. A slowed file's genuine slowdown is the mean
of all its runs' estimates, and detection is also given by band of that (~5, ~10, ~15, ~20 %); ``--resample``
draws of K runs (with replacement) give finer rates. Every run's samples go to ``WORKDIR/ab-runs.json``
(``--analyse-only`` re-judges them). Several files share each round here where the CLI's pair has two, so each
pair is timed further apart than the CLI's 0.1 s: harsher than the CLI.

    python benchmarks/compare_false_alarms.py --workdir /tmp/fcbench-cmp          # ~25 min on 2 cores
    python benchmarks/compare_false_alarms.py --quick
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402


def _flops(model: str, options: dict, size: int | tuple[int, int]) -> int:
    from fcbench.models import create, profile

    h, w = (size, size) if isinstance(size, int) else size
    m = create(model, **{**options, "input_size": [h, w]})
    return int(profile(m, input_size=(h, w))["flops"])


def pick_sizes(model: str, options: dict, base: int, slowdowns: list[float]) -> dict[float, tuple[int, int, float]]:
    """Per slowdown: the (H, W) near ``base`` whose FLOPs ratio to ``base`` x ``base`` is closest, and that ratio."""
    f0 = _flops(model, options, base)
    cands = []
    top = base + base // 8 + 1
    for h in range(base, top):  # strides round odd sizes up: any H x W, not only squares
        for w in range(h, top):
            cands.append(((h, w), _flops(model, options, (h, w)) / f0))
    out = {}
    for s in slowdowns:
        (h, w), r = min(cands, key=lambda c: abs(c[1] - (1 + s / 100)))
        out[s] = (h, w, r)
    return out


def prepare(root: Path, model: str, options: dict, size: tuple[int, int]) -> dict[str, Path]:
    """Train 2 steps and convert to onnx and openvino, once per workdir."""
    from fcbench.conversion import convert
    from fcbench.training.config import TrainConfig
    from fcbench.training.loop import train

    d = root / f"{model}-{size[0]}x{size[1]}"
    out = {"onnx": d / "model.onnx", "openvino": d / "model.xml"}
    if all(p.exists() and p.with_name(p.name + ".manifest.json").exists() for p in out.values()):
        return out
    train(TrainConfig(model=model, model_options={**options, "input_size": list(size)}, data="synthetic:faces",
                      data_options={"num_classes": 8, "samples_per_class": 4}, epochs=1, max_steps=2, batch_size=8,
                      lr=0.01, threads=1, out=str(d)))
    for o in convert(d / "model.pt", ["onnx", "openvino"]):
        if o.status != "ok":
            raise SystemExit(f"{d}: convert {o.format}: {o.status} {o.reason}")
    return out


def false_alarms(null: dict[str, int], trials: str) -> str:
    """The false-alarm line: slower or faster verdicts among the same-artifact ``trials``."""
    n = sum(null.values())
    alarms = null.get("slower", 0) + null.get("faster", 0)
    return (f"false alarms: {alarms} of {n} {trials} = {100 * alarms / max(n, 1):.2f} % (target <= 1 %); "
            f"verdicts {json.dumps(null, sort_keys=True)}")


def shares(counts: dict[str, int]) -> dict[str, float]:
    """Per cent of the trials called slower / unknown / same."""
    total = max(sum(counts.values()), 1)
    return {f"{v} %": 100 * counts.get(v, 0) / total for v in ("slower", "unknown", "same")}


def main() -> None:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--models", default="r18,r34,mbf", help="models (default r18,r34,mbf)")
    p.add_argument("--width", type=float, default=0.25, help="their width (default 0.25)")
    p.add_argument("--size", type=int, default=64, help="base input size (default 64)")
    p.add_argument("--backends", default="onnxruntime:cpu,openvino:CPU")
    p.add_argument("--reruns", type=int, default=20, help="reruns of every artifact (default 20)")
    p.add_argument("--slowdowns", default=None, help="per cent more FLOPs (default 5,10,20; with --ab 5,10,14,20: "
                                                      "FLOPs do not map one to one onto time)")
    p.add_argument("--ab", action="store_true", help="A/B: the files timed in turn in one worker (compare A B)")
    p.add_argument("--pool", default="3,5", help="--ab: A/B runs pooled per compare, as compare --repeats; a "
                                                  "comma list (default 3,5); one run alone is judged too")
    p.add_argument("--resample", type=int, default=500, help="--ab: also judge this many draws (with replacement) "
                                                                "of --pool runs per cell (default 500)")
    p.add_argument("--analyse-only", action="store_true",
                   help="compare the reruns already in the workdir's store (of an earlier run) without benching")
    p.set_defaults(seconds=-1.0)  # not given: 1 s; with --ab, compare A B's default
    args = _common.parse(p)
    if args.seconds < 0:
        from fcbench.options import CompareConfig

        args.seconds = 0.3 if args.quick else CompareConfig().min_seconds if args.ab else 1.0
    if args.slowdowns is None:
        args.slowdowns = "5,10,14,20" if args.ab else "5,10,20"
    if args.quick:
        args.reruns = min(args.reruns, 3)
        args.size, args.width = 32, 0.125
        args.slowdowns = "10,20"
    run = _common.Run(args)
    root = _common.workdir(args)

    import numpy as np

    import fcbench
    from fcbench.compare import compare_pair
    from fcbench.compare.match import Group, key_of
    from fcbench.options import COMPARE_THRESHOLDS
    from fcbench.results.context import RunContext
    from fcbench.results.store import Store

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    slowdowns = [float(s) for s in args.slowdowns.split(",")]
    backends = [b.strip() for b in args.backends.split(",")]
    options = {"width": args.width}
    arts: dict[tuple[str, float], Path] = {}  # (model, slowdown; 0 = base) -> artifact, per format below
    sizes: dict[tuple[str, float], tuple[int, int, float]] = {}
    for model in models:
        sizes[(model, 0.0)] = (args.size, args.size, 1.0)
        sizes.update({(model, s): v for s, v in pick_sizes(model, options, args.size, slowdowns).items()})
    files: list[str] = []
    for (model, s), (h, w, r) in sizes.items():
        made = prepare(root, model, options, (h, w))
        arts[(model, s)] = made["onnx"].parent
        files += [str(f) for f in (made["onnx"], made["openvino"]) if str(f) not in files]
        print(f"{model} {h}x{w}: FLOPs x{r:.3f}" + (f" (asked +{s:g} %)" if s else " (base)"))
    if args.ab:
        ab(args, run, root, models, backends, slowdowns, sizes, arts)
        return
    store_path = root / "compare-false-alarms.sqlite"
    if store_path.exists() and not args.analyse_only:
        store_path.unlink()
    rng = random.Random(0)
    with Store(store_path) as store:
        for i in range(0 if args.analyse_only else args.reruns):
            if args.quiet_wait > 0:
                _common.wait_quiet(args)
            order = files[:]
            rng.shuffle(order)
            ctx = RunContext(run_id=f"rerun-{i:02d}")
            result = fcbench.bench(fcbench.BenchConfig(artifacts=order, backends=backends, threads=args.threads,
                                                       warmup=args.warmup, runs=args.runs,
                                                       min_seconds=args.seconds), ctx)
            store.add(result)
            print(f"rerun {i + 1}/{args.reruns} done")
            sys.stdout.flush()
        rows = [r for r in store.query(kind="speed") if (r.get("extra") or {}).get("status") == "ok"]
        args.reruns = len(store.run_ids())

    folder_of: dict[str, list[tuple[str, float]]] = {}  # two slowdowns may pick one size
    for k, folder in arts.items():
        folder_of.setdefault(str(folder), []).append(k)
    cells: dict[tuple[str, float, str, str], list[dict]] = {}
    for r in rows:
        for model, s in folder_of.get(str(Path(r["artifact"]).parent), []):  # rows of other sizes: not ours
            cells.setdefault((model, s, r["format"], f"{r['backend']}:{r['variant']}"), []).append(r)
    limits = dict(COMPARE_THRESHOLDS)

    def verdict(b: list[dict], n: list[dict]) -> str:
        k = key_of(b[0])
        return compare_pair(Group(k, b[0]["device_fingerprint"], b), Group(k, n[0]["device_fingerprint"], n),
                            limits).verdict

    def chunks(rs: list[dict], k: int) -> list[list[dict]]:
        rs = sorted(rs, key=lambda r: r["run_id"])
        return [rs[i:i + k] for i in range(0, len(rs) - k + 1, k)]

    def med(xs: list[dict]) -> float:
        return float(np.median([x for r in xs for x in r["samples_ms"]]))

    from fcbench.compare.stats import RUN_NOISE, run_spread

    spreads = {c: run_spread([np.asarray(r["samples_ms"]) for r in rs]) for c, rs in cells.items() if not c[1]}
    pooled = run_spread(*[[np.asarray(r["samples_ms"]) for r in rs] for c, rs in cells.items() if not c[1]])
    print()
    print(f"run-to-run noise (sd of the reruns' log medians): pooled {pooled or 0:.3f}, per cell "
          + ", ".join(f"{m} {f} {b} {v or 0:.3f}" for (m, _, f, b), v in sorted(spreads.items()))
          + f"; compare's floor RUN_NOISE = {RUN_NOISE}")
    print(f"threshold: latency {limits['latency']:g} % (the default); {len(rows)} rows")
    for k in (1, 3):  # one run a side, and (as docs/ci.md advises on shared runners) three runs a side
        if args.reruns < 2 * k:
            continue
        what = "one run" if k == 1 else f"{k} reruns pooled"
        null: dict[str, int] = {}
        per_cell = []
        for (model, s, fmt, backend), rs in sorted(cells.items()):
            if s:
                continue
            alarms = 0
            for b, n in itertools.combinations(chunks(rs, k), 2):
                v = verdict(b, n)
                null[v] = null.get(v, 0) + 1
                alarms += v in ("slower", "faster")
            per_cell.append(f"{model} {fmt} {backend}: {alarms}")
        print()
        print(f"## {what} a side")
        print(false_alarms(null, "pairs of the same artifact"))
        print("  alarms per cell: " + "; ".join(per_cell))
        table = []
        for s in slowdowns:
            counts: dict[str, int] = {}
            ratios = []
            for (model, s2, fmt, backend), rs in cells.items():
                base = cells.get((model, 0.0, fmt, backend), [])
                if s2 != s or not base:
                    continue
                ratios.append(med(rs) / med(base))
                for b in chunks(base, k):
                    for n in chunks(rs, k):
                        v = verdict(b, n)
                        counts[v] = counts.get(v, 0) + 1
            flops = np.median([sizes[(m, s)][2] for m in models])
            table.append({"asked +%": f"{s:g}", "FLOPs ratio": float(flops),
                          "measured ratio (median over cells)": float(np.median(ratios or [0])),
                          "pairs": max(sum(counts.values()), 1), **shares(counts)})
        print(_common.markdown(table, list(table[0]) if table else []))
    print("targets: false alarms <= 1 %, slower >= 95 % at +10 %")
    run.end()


def ab(args, run, root: Path, models, backends, slowdowns, sizes, arts) -> None:
    import numpy as np

    from fcbench.backends import expand
    from fcbench.benchmark.run import load_artifact, run_interleaved
    from fcbench.compare.stats import AB_NOISE, ab_run_estimate, compare_ab
    from fcbench.options import COMPARE_THRESHOLDS, BenchConfig

    threshold = COMPARE_THRESHOLDS["latency"] / 100
    pools = [int(k) for k in str(args.pool).split(",") if k.strip()]
    cfg = BenchConfig(artifacts=["x"], warmup=args.warmup, runs=args.runs, min_seconds=args.seconds)
    suffix = {"onnxruntime": "model.onnx", "openvino": "model.xml"}
    data_file = root / "ab-runs.json"  # every A/B run's samples and rounds: --analyse-only re-judges them
    # runs[f"{model} {backend}"] = list of reruns; each: [[samples, rounds] per file: base, copy, slowed ...]
    runs: dict[str, list] = json.loads(data_file.read_text()) if args.analyse_only and data_file.exists() else {}
    t0 = time.time()
    for i in range(0 if args.analyse_only else args.reruns):
        if args.quiet_wait > 0:
            _common.wait_quiet(args)
        for model in models:
            for backend in backends:
                spec = expand([backend])[0]
                name = suffix[spec.plugin]
                base = arts[(model, 0.0)] / name
                files = [base, base] + [arts[(model, s)] / name for s in slowdowns]
                items = [load_artifact(f, cfg) for f in files]
                # as compare --repeats does: every other run loads (and starts) the files in the other order
                order = list(range(len(items))) if i % 2 == 0 else list(range(len(items)))[::-1]
                cells = run_interleaved([items[k] for k in order], spec, cfg, args.threads)
                if any(c.status != "ok" for c in cells):
                    raise SystemExit(f"{model} {backend}: " + "; ".join(c.reason for c in cells if c.reason))
                by_file = [None] * len(items)
                for k, c in zip(order, cells, strict=True):
                    by_file[k] = [c.extra["samples_ms"], c.extra["rounds"]]
                runs.setdefault(f"{model} {backend}", []).append(by_file)
        data_file.write_text(json.dumps(runs))
        print(f"rerun {i + 1}/{args.reruns} done ({time.time() - t0:.0f} s)")
        sys.stdout.flush()

    def pair(rerun: list, k: int) -> tuple:
        (b, br), (n, nr) = rerun[0], rerun[k]
        return b, br, n, nr

    # every run's estimate and within-run variance per file, as compare_ab computes them: [cell][run][file]
    ests = {c: [[(e, ((lo + hi) / 2) ** 2) for e, lo, hi, _ in (ab_run_estimate(*pair(r, j)) for j in
                                                               range(1, len(r)))] for r in rs]
            for c, rs in runs.items()}

    def est(c: str, i: int, j: int) -> tuple[float, float]:
        """Run ``i`` of cell ``c``: file ``j``'s estimate against the base (log) and its within-run variance."""
        return ests[c][i][j - 1]

    copies = [est(c, i, 1) for c, rs in runs.items() for i in range(len(rs))]
    n_runs = len(next(iter(runs.values()), []))
    total = float(np.var([e for e, _ in copies], ddof=1))
    within = float(np.mean([v for _, v in copies]))
    print()
    print(f"## A/B (timed in turn in one worker), {args.seconds:g} s of timed calls per file, threshold "
          f"{100 * threshold:g} %, {n_runs} runs of each of {len(runs)} model/backend cells")
    print(f"the same file against its copy, one A/B run's estimate (log): sd {total ** 0.5:.4f}; within-run se "
          f"(rms) {within ** 0.5:.4f}; between runs beyond that {max(0.0, total - within) ** 0.5:.4f} "
          f"(compare's floor AB_NOISE = {AB_NOISE})")
    # a slowed file's genuine slowdown: the mean of all its runs' estimates in that cell (FLOPs are not time)
    truth = {(c, j): float(np.exp(np.mean([est(c, i, 2 + j)[0] for i in range(len(rs))])))
             for c, rs in runs.items() for j in range(len(slowdowns))}
    bands = [("~5 % (x1.03-1.07)", 1.03, 1.07), ("~10 % (x1.08-1.12)", 1.08, 1.12),
             ("~15 % (x1.12-1.17)", 1.12, 1.17), ("~20 % (x1.17-1.25)", 1.17, 1.25)]
    band_of = {key: name for key, v in truth.items() for name, lo, hi in bands if lo <= v < hi}
    print("measured slowdown of each slowed file (mean of its runs): " + ", ".join(
        f"{c} +{slowdowns[j]:g}: x{v:.3f}" for (c, j), v in truth.items()))
    for k in sorted({1, *pools}):
        null: dict[str, int] = {}
        found: dict[float, dict[str, int]] = {s: {} for s in slowdowns}
        ratios: dict[float, list[float]] = {s: [] for s in slowdowns}
        band: dict[str, dict[str, int]] = {b[0]: {} for b in bands}
        for c, rs in runs.items():
            for g in range(0, len(rs) - k + 1, k):  # disjoint groups of k consecutive runs: one compare each
                group = rs[g:g + k]
                st = compare_ab([pair(r, 1) for r in group], threshold)
                null[st.verdict] = null.get(st.verdict, 0) + 1
                for j, s in enumerate(slowdowns):
                    st = compare_ab([pair(r, 2 + j) for r in group], threshold)
                    found[s][st.verdict] = found[s].get(st.verdict, 0) + 1
                    ratios[s].append(st.ratio)
                    if (c, j) in band_of:
                        name = band_of[(c, j)]
                        band[name][st.verdict] = band[name].get(st.verdict, 0) + 1
        print()
        print(f"### {k} A/B run{'s' if k > 1 else ''} per compare (--repeats {k})")
        print(false_alarms(null, "base-vs-copy compares"))
        table = []
        for s in slowdowns:
            flops = np.median([sizes[(m, s)][2] for m in models])
            table.append({"asked +% FLOPs": f"{s:g}", "FLOPs ratio": float(flops),
                          "measured ratio (median)": float(np.median(ratios[s] or [0])),
                          "compares": max(sum(found[s].values()), 1), **shares(found[s])})
        print(_common.markdown(table, list(table[0])))
        print("by the slowed file's measured slowdown (mean of all its runs):")
        print(_common.markdown([{"genuine slowdown": name, "compares": sum(v.values()), **shares(v)}
                                for name, v in band.items() if v],
                               ["genuine slowdown", "compares", "slower %", "unknown %", "same %"]))
        # the same compares split by backend, with the copy's mean change: a bias of one runtime shows here
        per = []
        for backend in backends:
            cells = {c: rs for c, rs in runs.items() if c.endswith(" " + backend)}
            row: dict = {"backend": backend}
            for label, j in [("copy", 1)] + [(f"+{s:g} %", 2 + n) for n, s in enumerate(slowdowns)]:
                verdicts: dict[str, int] = {}
                for rs in cells.values():
                    for g in range(0, len(rs) - k + 1, k):
                        v = compare_ab([pair(r, j) for r in rs[g:g + k]], threshold).verdict
                        verdicts[v] = verdicts.get(v, 0) + 1
                row[f"{label} slower %"] = round(100 * verdicts.get("slower", 0) / max(sum(verdicts.values()), 1), 1)
            copy = [est(c, i, 1)[0] for c, rs in cells.items() for i in range(len(rs))]
            row["copy/base, mean of runs"] = round(float(np.exp(np.mean(copy))), 4)
            row["sd of one run (log)"] = round(float(np.std(copy, ddof=1)), 4)
            per.append(row)
        print(_common.markdown(per, list(per[0])))
    # more trials from the same runs: K runs drawn with replacement from a cell's runs (not independent of the
    # disjoint groups above, but with many more draws the rates get finer than one in a few dozen)
    rng = np.random.default_rng(0)
    for k in pools:
        null: dict[str, int] = {}
        band: dict[str, dict[str, int]] = {b[0]: {} for b in bands}
        for c, rs in runs.items():
            for _ in range(args.resample):
                group = [rs[i] for i in rng.integers(0, len(rs), k)]
                v = compare_ab([pair(r, 1) for r in group], threshold).verdict
                null[v] = null.get(v, 0) + 1
                for j in range(len(slowdowns)):
                    if (c, j) in band_of:
                        name = band_of[(c, j)]
                        v = compare_ab([pair(r, 2 + j) for r in group], threshold).verdict
                        band[name][v] = band[name].get(v, 0) + 1
        print()
        print(f"### resampled: {args.resample} draws of {k} runs per cell (with replacement)")
        print(false_alarms(null, "base-vs-copy compares"))
        print(_common.markdown([{"genuine slowdown": name, "compares": sum(v.values()), **shares(v)}
                                for name, v in band.items() if v],
                               ["genuine slowdown", "compares", "slower %", "unknown %", "same %"]))
    print("targets: false alarms <= 1 %, slower >= 95 % at +10 %")
    run.end()


if __name__ == "__main__":
    main()
