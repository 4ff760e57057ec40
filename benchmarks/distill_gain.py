"""How much of the teacher-student gap each distillation method closes, on built-in synthetic faces.

A teacher (IResNet-34, width 0.25) is trained once; a student (IResNet-18, width 0.125) is trained
alone and distilled from that teacher with each method, --seeds times each (the training seed varies;
the data seed, which fixes the synthetic world, does not). The student always gets the same data, the
same epochs and the same learning-rate schedule as when trained alone; the teacher is trained longer
(--teacher-epochs), as a well-trained teacher is. Every model is evaluated with the insightface 10-fold
verification protocol on ``synthetic:pairs``, whose identities are disjoint from the training ones:
accuracy and TAR@FAR=1e-2, mean +- std over seeds. For each method: gain = mean(distilled) - mean(alone),
fraction of the gap closed = gain / (teacher - mean(alone)), and whether the gain exceeds twice the
seed-to-seed std (the larger of the alone runs' and the method's). A reference row trains the student
alone for the teacher's epochs: what the same student reaches with more steps instead of a teacher.

Runs are kept under --workdir (one folder per settings, one per run with its metrics.json); a run whose
metrics exist is reused, so an interrupted benchmark continues and --methods can add methods later. Rows
(train, distill, eval) go to a store under the workdir, never to results/fcbench.sqlite.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: one core per run

import argparse
import hashlib
import json
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import DISTS, _cpu_snapshot, cpu_model, markdown, others_cores, uptime, workdir


@dataclass(frozen=True)
class Variant:
    """One distillation run per seed: ``method`` with its options and adaptive-margin flags."""

    label: str
    method: str
    method_options: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)  # no_copy_centres, fixed_margin, train_centres


VARIANTS = [
    Variant("embedding-mse", "embedding-mse"),
    Variant("adaptive-margin", "adaptive-margin"),
    Variant("adaptive-margin --no-copy-centres", "adaptive-margin", flags={"no_copy_centres": True}),
    Variant("adaptive-margin --fixed-margin", "adaptive-margin", flags={"fixed_margin": True}),
    Variant("adaptive-margin --train-centres", "adaptive-margin", flags={"train_centres": True}),
    Variant("triplet-l2", "triplet-l2"),
    Variant("triplet-cos", "triplet-cos"),
    Variant("margin", "margin"),
    Variant("angular", "angular"),
    Variant("ekd", "ekd"),
    Variant("embedding-mse+adaptive-margin", "embedding-mse+adaptive-margin"),
]
SHORT = {  # --methods may name a variant by these too
    "am": "adaptive-margin", "am-no-copy": "adaptive-margin --no-copy-centres",
    "am-fixed": "adaptive-margin --fixed-margin", "am-train": "adaptive-margin --train-centres",
    "mse": "embedding-mse", "mse+am": "embedding-mse+adaptive-margin",
}


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that fixes what a run computes (the seed apart); its hash names the run folders."""
    size = [args.size, args.size]
    return {
        "data": "synthetic:faces",
        "data_options": {"num_classes": args.num_classes, "samples_per_class": args.samples_per_class,
                         "difficulty": args.difficulty, "latent_dim": args.latent_dim, "seed": args.data_seed},
        "eval_data": "synthetic:pairs",
        "eval_options": {"num_pairs": args.pairs, "difficulty": args.difficulty, "latent_dim": args.latent_dim,
                         "seed": args.data_seed},
        "teacher": {"model": args.teacher, "model_options": {"width": args.teacher_width, "embedding_size":
                                                             args.embedding_size, "input_size": size},
                    "epochs": args.teacher_epochs, "seed": args.teacher_seed},
        "student": {"model": args.student, "model_options": {"width": args.student_width, "embedding_size":
                                                             args.embedding_size, "input_size": size},
                    "epochs": args.epochs},
        "train": {"batch_size": args.batch_size, "lr": args.lr, "schedule": "cosine", "warmup_epochs": 0.5,
                  "head": "arcface"},
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3, help="training seeds of every student (default 3)")
    p.add_argument("--methods", default="all",
                   help="comma-separated variants, all (default) or none (teacher and alone only): "
                        + ", ".join(v.label for v in VARIANTS)
                        + "; short names: " + ", ".join(f"{k}={v}" for k, v in SHORT.items()))
    p.add_argument("--variant", action="append", default=[], metavar="'METHOD KEY=VALUE ...'",
                   help="one more variant: a method (or a+b) with method options, e.g. 'embedding-mse weight=1000' "
                        "(repeatable; run after --methods' variants)")
    p.add_argument("--threads", type=int, default=1, help="threads of every training and evaluation (default 1)")
    p.add_argument("--workdir", default=None, help="runs, metrics and the results store (default: a new temp dir); "
                                                   "the same one again reuses finished runs")
    p.add_argument("--quick", action="store_true", help="tiny data and models, 1 seed, 1 epoch: checks the script "
                                                        "works in a minute or two")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the reference row (the student alone for the teacher's epochs; never run when those are "
                        "the student's)")
    g = p.add_argument_group("setting (defaults: the one in docs/performance.md)")
    g.add_argument("--size", type=int, default=32, help="input size, square (default 32)")
    g.add_argument("--num-classes", type=int, default=256, help="training identities (default 256)")
    g.add_argument("--samples-per-class", type=int, default=16, help="(default 16)")
    g.add_argument("--difficulty", type=float, default=1.0, help="synthetic data difficulty, 0..4 (default 1)")
    g.add_argument("--latent-dim", type=int, default=32, help="synthetic identity dimensions (default 32)")
    g.add_argument("--data-seed", type=int, default=0, help="fixes the synthetic world (default 0)")
    g.add_argument("--pairs", type=int, default=4000, help="evaluation pairs of unseen identities (default 4000)")
    g.add_argument("--teacher", default="r34", help="teacher model (default r34)")
    g.add_argument("--teacher-width", type=float, default=0.25, help="(default 0.25)")
    g.add_argument("--teacher-epochs", type=int, default=8, help="(default 8)")
    g.add_argument("--teacher-seed", type=int, default=0, help="(default 0)")
    g.add_argument("--student", default="r18", help="student model (default r18)")
    g.add_argument("--student-width", type=float, default=0.125, help="(default 0.125)")
    g.add_argument("--embedding-size", type=int, default=128, help="teacher's and student's (default 128)")
    g.add_argument("--epochs", type=int, default=4, help="student epochs, alone and distilled (default 4)")
    g.add_argument("--batch-size", type=int, default=64, help="(default 64)")
    g.add_argument("--lr", type=float, default=0.1, help="(default 0.1, cosine schedule, 0.5 warm-up epochs)")
    return p


def parse() -> argparse.Namespace:
    args = parser().parse_args()
    if args.quick:
        args.seeds = 1
        args.num_classes, args.samples_per_class, args.pairs = 16, 8, 400
        args.teacher_width, args.student_width = 0.125, 0.0625
        args.teacher_epochs, args.epochs = 1, 1
    by_label = {v.label: v for v in VARIANTS}
    if args.methods == "all":
        args.variants = list(VARIANTS)
    elif args.methods == "none":
        args.variants = []
    else:
        args.variants = []
        for name in (n.strip() for n in args.methods.split(",") if n.strip()):
            label = SHORT.get(name, name)
            if label not in by_label:
                raise SystemExit(f"--methods: unknown variant '{name}'; variants: "
                                 + ", ".join(by_label) + "; short names: " + ", ".join(SHORT))
            args.variants.append(by_label[label])
    for text in args.variant:
        method, *pairs = text.split()
        opts = {}
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq:
                raise SystemExit(f"--variant '{text}': '{pair}' is not KEY=VALUE")
            try:
                opts[key] = json.loads(value)
            except json.JSONDecodeError:
                opts[key] = value
        args.variants.append(Variant(" ".join([method, *pairs]), method, opts))
    return args


def header(args: argparse.Namespace, cfg: dict[str, Any]) -> tuple[float, ...]:
    from fcbench.results.context import package_version

    print("$ " + shlex.join([sys.executable, *sys.argv]) + f"    # cwd {os.getcwd()}")
    print("versions: " + ", ".join(f"{d} {v}" for d in DISTS[:3] if (v := package_version(d)))
          + f", python {platform.python_version()}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; threads {args.threads}, OMP_NUM_THREADS "
          f"{os.environ.get('OMP_NUM_THREADS')}{' (quick)' if args.quick else ''}")
    print("setting: " + json.dumps(cfg))
    print(f"seeds: {', '.join(str(s) for s in range(args.seeds))}; methods: "
          + ", ".join(v.label for v in args.variants))
    print(f"before: {uptime()}")
    sys.stdout.flush()
    return _cpu_snapshot()


def footer(start: tuple[float, ...]) -> None:
    now = _cpu_snapshot()
    wall = now[0] - start[0]
    print()
    print(f"after:  {uptime()}")
    print(f"during the run ({wall:.0f} s = {wall / 60:.1f} min): other processes used {others_cores(start):.2f} "
          f"cores on average (this script's own excluded), hypervisor steal {(now[3] - start[3]) / wall:.2f}")


class Bench:
    """Trains, distils and evaluates into ``root``; a run with a metrics.json is reused."""

    def __init__(self, args: argparse.Namespace, cfg: dict[str, Any], root: Path) -> None:
        import fcbench

        self.args, self.cfg, self.root = args, cfg, root
        self.ctx = fcbench.RunContext()
        self.store = root / "distill_gain.sqlite"
        self.timings: list[dict[str, Any]] = []

    def _common(self, seed: int, out: Path) -> dict[str, Any]:
        c = self.cfg
        return {"data": c["data"], "data_options": dict(c["data_options"]), **c["train"], "seed": seed,
                "out": str(out), "overwrite": True, "threads": self.args.threads, "device": "cpu"}

    def _done(self, out: Path) -> dict[str, Any] | None:
        f = out / "metrics.json"
        return json.loads(f.read_text()) if f.is_file() else None

    def _finish(self, label: str, seed: int, out: Path, result: Any, train_s: float) -> dict[str, Any]:
        import fcbench

        t = time.monotonic()
        ev = fcbench.evaluate(checkpoint=str(result), data=self.cfg["eval_data"],
                              data_options=dict(self.cfg["eval_options"]), threads=self.args.threads, ctx=self.ctx)
        eval_s = time.monotonic() - t
        m = dict(ev.metrics)
        with fcbench.Store(self.store) as db:
            db.add(result)
            db.add(ev)
        rec = {"label": label, "seed": seed, "accuracy": 100 * m["accuracy"], "tar": 100 * m["tar@far=1e-02"],
               "train_s": train_s, "eval_s": eval_s, "checkpoint": str(result)}
        (out / "metrics.json").write_text(json.dumps(rec, indent=1))
        return rec

    def _log(self, rec: dict[str, Any], reused: bool) -> dict[str, Any]:
        self.timings.append(rec)
        print(f"  {rec['label']:<36} seed {rec['seed']}: accuracy {rec['accuracy']:6.2f} %, TAR@FAR=1e-2 "
              f"{rec['tar']:6.2f} %, train {rec['train_s']:5.1f} s, eval {rec['eval_s']:4.1f} s"
              + ("  (reused)" if reused else ""))
        sys.stdout.flush()
        return rec

    def train(self, label: str, seed: int, out: Path, model: dict[str, Any], epochs: int) -> dict[str, Any]:
        import fcbench

        if (rec := self._done(out)) is not None:
            return self._log(rec, True)
        t = time.monotonic()
        result = fcbench.train(model=model["model"], model_options=dict(model["model_options"]), epochs=epochs,
                               ctx=self.ctx, **self._common(seed, out))
        return self._log(self._finish(label, seed, out, result, time.monotonic() - t), False)

    def distill(self, v: Variant, seed: int, out: Path, teacher: Path) -> dict[str, Any]:
        import fcbench

        if (rec := self._done(out)) is not None:
            return self._log(rec, True)
        s = self.cfg["student"]
        t = time.monotonic()
        result = fcbench.distill(teacher=str(teacher), student=s["model"], model_options=dict(s["model_options"]),
                                 epochs=s["epochs"], method=v.method, method_options=dict(v.method_options),
                                 ctx=self.ctx, **v.flags, **self._common(seed, out))
        return self._log(self._finish(v.label, seed, out, result, time.monotonic() - t), False)


def stats(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else float("nan"))


def pm(xs: list[float]) -> str:
    m, s = stats(xs)
    return f"{m:.2f}" if len(xs) == 1 else f"{m:.2f} ± {s:.2f}"


def table(runs: dict[str, list[dict[str, Any]]], teacher: dict[str, Any], order: list[str]) -> list[dict[str, Any]]:
    alone = runs["alone"]
    rows = [{"run": "teacher", "n": 1, "accuracy %": f"{teacher['accuracy']:.2f}",
             "TAR@FAR=1e-2 %": f"{teacher['tar']:.2f}"}]
    for label in order:
        rs = runs.get(label)
        if not rs:
            continue
        row: dict[str, Any] = {"run": label, "n": len(rs)}
        for key, col in (("accuracy", "accuracy"), ("tar", "TAR")):
            xs = [r[key] for r in rs]
            row[f"{col} %" if key == "accuracy" else "TAR@FAR=1e-2 %"] = pm(xs)
            if label == "alone":
                continue
            a_mean, a_std = stats([r[key] for r in alone])
            m, s = stats(xs)
            gain, gap = m - a_mean, teacher[key] - a_mean
            noise = max(a_std, s)
            row[f"{col} gain"] = f"{gain:+.2f}"
            row[f"{col} gap closed"] = f"{100 * gain / gap:.0f} %" if abs(gap) > 1e-9 else "-"
            row[f"{col} gain > 2 std"] = ("-" if noise != noise else
                                          f"{'yes' if gain > 2 * noise else 'no'} ({gain / noise:.1f} std)"
                                          if noise > 0 else "yes")
        rows.append(row)
    return rows


def main() -> None:
    args = parse()
    cfg = settings(args)
    start = header(args, cfg)
    key = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:10]
    root = workdir(args) / f"distill-gain-{'quick-' if args.quick else ''}{key}"
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.json").write_text(json.dumps(cfg, indent=1))
    print(f"workdir: {root}")
    b = Bench(args, cfg, root)
    t = cfg["teacher"]
    teacher = b.train("teacher", t["seed"], root / "teacher", t, t["epochs"])
    teacher_ckpt = Path(teacher["checkpoint"])
    runs: dict[str, list[dict[str, Any]]] = {}
    reference = f"alone, {t['epochs']} epochs (reference)"
    with_reference = not args.no_reference and t["epochs"] != cfg["student"]["epochs"]
    order = ["alone", *([reference] if with_reference else []), *(v.label for v in args.variants)]
    for seed in range(args.seeds):
        d = root / f"seed{seed}"
        s = cfg["student"]
        runs.setdefault("alone", []).append(b.train("alone", seed, d / "alone", s, s["epochs"]))
        if with_reference:
            runs.setdefault(reference, []).append(b.train(reference, seed, d / "alone-long", s, t["epochs"]))
        for v in args.variants:
            folder = v.label.replace(" --", "_").replace("+", "_plus_")
            runs.setdefault(v.label, []).append(b.distill(v, seed, d / folder, teacher_ckpt))
    rows = table(runs, teacher, order)
    print()
    print(f"teacher {t['model']} width {t['model_options']['width']} ({t['epochs']} epochs, seed {t['seed']}); "
          f"student {cfg['student']['model']} width {cfg['student']['model_options']['width']} "
          f"({cfg['student']['epochs']} epochs, alone and distilled); {cfg['data']} "
          f"{json.dumps(cfg['data_options'])}; evaluated on {cfg['eval_data']} {json.dumps(cfg['eval_options'])}, "
          f"10-fold; mean ± std over {args.seeds} seed(s)")
    print()
    print(markdown(rows, ["run", "n", "accuracy %", "accuracy gain", "accuracy gap closed", "accuracy gain > 2 std",
                          "TAR@FAR=1e-2 %", "TAR gain", "TAR gap closed", "TAR gain > 2 std"]))
    print("(gain: mean minus the alone runs' mean, in points; gap closed: gain / (teacher - alone); std: the larger "
          "of the alone runs' and the row's seed-to-seed std)")
    print()
    secs = {}
    for r in b.timings:
        kind = "teacher" if r["label"] == "teacher" else "alone" if r["label"] in ("alone", reference) else "distill"
        secs.setdefault((kind, r["label"]), []).append(r["train_s"] + r["eval_s"])
    print("seconds per run (train + eval; reused runs show their first time): "
          + "; ".join(f"{label} {statistics.fmean(v):.0f}" for (_, label), v in secs.items()))
    print(f"total of the runs' seconds: {sum(r['train_s'] + r['eval_s'] for r in b.timings):.0f}")
    footer(start)


if __name__ == "__main__":
    main()
