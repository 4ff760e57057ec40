"""The full table for r18: eager PyTorch fp32 vs every backend on this host, in one run.

Every artifact fcbench makes from one r18 checkpoint, through every backend that loads it, plus
the openvino-f32 profile; speed-up is eager PyTorch's p50 over the cell's p50.
"""

from __future__ import annotations

from _common import header, markdown, parser, r18_artifacts, workdir


def main() -> None:
    from fcbench.bench.run import BenchConfig, bench

    args = parser(__doc__.splitlines()[0]).parse_args()
    if args.quick:
        args.seconds = 0.5
    header(args)
    root = workdir(args)
    art = r18_artifacts(root, args.quick)
    cells = bench(BenchConfig(artifacts=[str(p) for p in art.values()], backends=["all", "openvino-f32"],
                              threads=args.threads, warmup=10, runs=30, min_seconds=args.seconds,
                              store=str(root / "bench.sqlite")))
    ok = [c for c in cells if c.status == "ok"]
    eager = next(c for c in ok if c.backend == "pytorch:eager").stats.p50_ms
    rows = [{"artifact": c.artifact.rsplit("/", 1)[-1], "backend": c.backend, "p50 ms": c.stats.p50_ms,
             "p90 ms": c.stats.p90_ms, "speed-up vs eager": eager / c.stats.p50_ms,
             "GFLOP/s": c.gflops_per_s or 0.0, "share of peak": f"{100 * (c.peak_share or 0):.0f} %",
             "init ms": c.init_ms, "size MB": c.size_mb, "precision": c.extra.get("precision", ""),
             "placement": c.extra.get("placement", "")} for c in ok]
    print(markdown(rows, ["artifact", "backend", "p50 ms", "p90 ms", "speed-up vs eager", "GFLOP/s",
                          "share of peak", "init ms", "size MB", "precision", "placement"]))
    skipped = sorted({(c.backend, c.reason) for c in cells if c.status != "ok"})
    if skipped:
        print("\nnot run here:")
        for backend, reason in skipped:
            print(f"- {backend}: {reason}")


if __name__ == "__main__":
    main()
