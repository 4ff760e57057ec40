"""``fcbench compare A B`` of two model files: both timed now, in turn, in one bench worker (A/B), stored as one
run's rows, and judged from per-round ratios. The statistics on simulated runs whose speed wanders as a shared
cloud machine's does; the plumbing end to end with real ONNX files and ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcbench.compare.stats import compare_ab, compare_interleaved, compare_latency
from fcbench.results.store import Store


def _wandering(rng: np.random.Generator, rounds: int, per_round: int, sd: float) -> np.ndarray:
    """The machine's speed per round: a random walk plus bursts, as a busy 2-core VM gives (log scale)."""
    walk = np.cumsum(rng.normal(0, sd / 3, rounds))
    bursts = rng.choice([0.0, 0.0, 0.0, 0.0, 1.5], rounds) * rng.random(rounds)
    return np.repeat(walk + bursts, per_round)


def _ab(rng, ratio: float, rounds: int = 20, per_round: int = 12, sd: float = 0.2):
    """Samples of BASE and NEW timed in turn: each round's wander hits both; NEW is ``ratio`` x slower."""
    r = np.repeat(np.arange(rounds), per_round)
    speed_b = _wandering(rng, rounds, per_round, sd)
    speed_n = speed_b + rng.normal(0, 0.01, speed_b.size)  # the next tenth of a second: nearly the same machine
    jitter = lambda: 1 + rng.gamma(2.0, 0.02, r.size)  # noqa: E731
    return 5.0 * np.exp(speed_b) * jitter(), r, 5.0 * ratio * np.exp(speed_n) * jitter(), r


def test_in_turn_timing_sees_through_wander_that_defeats_two_separate_runs():
    """A machine whose speed wanders by ~20 % between runs: two separate runs a side cannot call a 10 % slowdown
    (it is inside the noise), the per-round ratios of the same runs timed in turn can; equal files stay same."""
    rng = np.random.default_rng(3)
    # the simulation has no between-run spread of its own, so a small floor (the default is a VM's measured one)
    slow = [compare_interleaved(*_ab(rng, 1.10), ab_noise=0.005) for _ in range(30)]
    null = [compare_interleaved(*_ab(rng, 1.00), ab_noise=0.005) for _ in range(30)]
    assert sum(s.verdict == "slower" for s in slow) >= 28, [s.verdict for s in slow]
    assert not any(s.verdict in ("slower", "faster") for s in null), [s.verdict for s in null]
    assert sum(s.verdict == "same" for s in null) >= 25, [s.verdict for s in null]
    assert all(s.rounds == 20 and "A/B" in s.notes[0] for s in slow)
    # the same wander between two separate runs (no pairing) gives alarms on equal files: why A/B exists
    alarms = 0
    for _ in range(30):
        b, _, n, _ = _ab(rng, 1.00)
        alarms += compare_latency([b], [n * np.exp(rng.normal(0, 0.2))], reps=300).verdict in ("slower", "faster")
    assert alarms >= 5, alarms


def test_a_burst_that_slows_one_round_ten_fold_does_not_decide():
    rng = np.random.default_rng(5)
    b, br, n, nr = _ab(rng, 1.0, sd=0.02)
    n = n.copy()
    n[nr == 4] *= 10  # one round of NEW hit by a burst its BASE half did not see
    s = compare_interleaved(b, br, n, nr, ab_noise=0.005)
    assert s.verdict in ("same", "unknown") and abs(s.ratio - 1) < 0.05, s


def _ab_process(rng, ratio: float, offset: float = 0.03):
    """One A/B run in its own worker: on top of the rounds' wander, the process's sessions land a few per cent
    apart (memory placement, which core; sd ``offset``), a per-run offset the rounds cannot show."""
    b, br, n, nr = _ab(rng, ratio, sd=0.05)
    return b, br, n * np.exp(rng.normal(0, offset)), nr


def test_pooling_fresh_workers_averages_out_what_one_run_cannot():
    """Per-run offsets twice compare's pooled floor: one run (judged against the larger one-run floor) misses a
    10 % slowdown a third of the time; three runs pooled catch it every time, and
    do not cry wolf on equal files."""
    rng = np.random.default_rng(11)
    one = [compare_ab([_ab_process(rng, 1.10)]) for _ in range(60)]
    three = [compare_ab([_ab_process(rng, 1.10) for _ in range(3)]) for _ in range(60)]
    null = [compare_ab([_ab_process(rng, 1.00) for _ in range(3)]) for _ in range(60)]
    caught_one = sum(s.verdict == "slower" for s in one)
    caught_three = sum(s.verdict == "slower" for s in three)
    assert caught_three >= 57 and caught_three > caught_one + 10, (caught_one, caught_three)
    assert not any(s.verdict in ("slower", "faster") for s in null), [s.verdict for s in null]
    assert sum(s.verdict == "same" for s in null) >= 45, [s.verdict for s in null]
    assert all(s.base_runs == 3 and s.rounds == 60 and "3 runs" in s.notes[0] for s in three)
    assert one[0].ci_high - one[0].ci_low > three[0].ci_high - three[0].ci_low


def test_runs_that_disagree_beyond_their_rounds_widen_the_interval():
    """The floor is a quiet machine's; on a runner whose processes land 10 % apart, the pooled runs' own spread
    counts instead, so equal files stay undecided rather than slower or faster."""
    rng = np.random.default_rng(12)
    quiet = compare_ab([_ab_process(rng, 1.0, offset=0.0) for _ in range(3)])
    loud = [compare_ab([_ab_process(rng, 1.0, offset=0.10) for _ in range(3)]) for _ in range(40)]
    width = np.median([s.ci_high - s.ci_low for s in loud])
    assert width > 3 * (quiet.ci_high - quiet.ci_low), (width, quiet)
    assert sum(s.verdict in ("slower", "faster") for s in loud) <= 3, [s.verdict for s in loud]
    assert sum(s.verdict == "unknown" for s in loud) >= 30, [s.verdict for s in loud]


def test_too_few_rounds_is_an_error():
    with pytest.raises(ValueError, match="at least 6 rounds"):
        compare_interleaved([1.0] * 3, [0, 1, 2], [1.0] * 3, [0, 1, 2])


@pytest.fixture(scope="module")
def two_onnx(tmp_path_factory):
    """A tiny r18 and the same with a 3x larger input (~3x the work), as ONNX files with manifests."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from fcbench.conversion import convert
    from fcbench.models import create
    from fcbench.training.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("ab")
    out = {}
    for name, size in (("base", 32), ("big", 56)):
        ckpt = root / name / "model.pt"
        save_checkpoint(ckpt, create("r18", width=0.125, layers=[1, 1, 1, 1], input_size=[size, size]))
        (o,) = convert(ckpt, ["onnx"])
        assert o.status == "ok", o.reason
        out[name] = root / name / "model.onnx"
    return out


FAST = ("--threads", "1", "--runs", "10", "--min-seconds", "0.4", "--repeats", "2")


def test_two_model_files_are_timed_in_turn_stored_and_compared(cli, in_tmp, two_onnx):
    res = cli("compare", two_onnx["base"], two_onnx["big"], *FAST, "--format", "json", "--store", "s.sqlite")
    assert res.code == 1, res.err  # ~3x the work: a regression at the default 5 %
    out = json.loads(res.out)
    (row,) = out["rows"]
    assert row["verdict"] == "slower" and row["stats"]["ratio"] > 1.5, row
    assert row["stats"]["rounds"] >= 12 and row["backend"] == "onnxruntime" and row["threads"] == "1"
    with Store(in_tmp / "s.sqlite") as s:
        rows = s.query(kind="speed")
    assert len(rows) == 4 and len({r["run_id"] for r in rows}) == 1  # one run, both files
    # two repeats (FAST), each a fresh worker; the second loads and starts with NEW
    assert [r["artifact"] == str(two_onnx["base"]) for r in rows] == [True, False, True, False]
    assert [r["extra"]["repeat"] for r in rows] == [0, 0, 1, 1]
    assert [r["extra"]["interleaved"]["position"] for r in rows] == [0, 1, 1, 0]
    assert all(len(r["extra"]["rounds"]) == len(r["samples_ms"]) for r in rows)
    # the same file twice: never a regression (a loose threshold: this is a shared machine)
    res = cli("compare", two_onnx["base"], two_onnx["base"], *FAST, "--threshold", "latency=50", "--format",
              "markdown", "--store", "s.sqlite")
    assert res.code == 0, res.err
    assert "A/B, 2 run(s)" in res.out and "rounds" in res.out


def test_ab_bad_input_is_one_line_exit_2(cli, in_tmp, two_onnx, tmp_path):
    res = cli("compare", "last~1", "last", "--backend", "onnxruntime:cpu", "--store", "s.sqlite")
    assert res.code == 2 and "two model files" in res.err, res.err
    res = cli("compare", two_onnx["base"], two_onnx["big"], "--backend", "tflite:xnnpack", *FAST)
    assert res.code == 2 and "tflite:xnnpack" in res.err and "onnx" in res.err, res.err
    pt = two_onnx["base"].with_name("model.pt")
    res = cli("compare", two_onnx["base"], pt, *FAST)
    assert res.code == 2 and "is onnx and NEW" in res.err and "one format" in res.err, res.err


def test_onnxruntime_sessions_timed_in_turn_do_not_spin():
    """An idle ORT session's spinning threads slowed the session timed after it (a file against a copy of itself
    read x1.058 slower): sessions timed in turn are made without spinning, unless the user's options say."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from fcbench.backends.onnxruntime import OnnxRuntimeBackend

    b = OnnxRuntimeBackend()
    got = b.interleaved_options("cpu", {"graph_optimization": "all"})
    assert got == {"graph_optimization": "all", "session_config": {"session.intra_op.allow_spinning": "0"}}
    mine = {"session_config": {"session.intra_op.allow_spinning": "1", "x": "y"}}
    assert b.interleaved_options("cpu", mine) == mine
