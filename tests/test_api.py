"""The Python API is the product: what the CLI does, a script does with ``import fcbench`` alone; and every
registered verb is a recipe step with its command's option names."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    import fcbench

    events = []
    hooks = fcbench.Hooks(on_event=lambda kind, payload: events.append(kind))
    run = fcbench.train(model="r18", model_options={"width": 0.125, "layers": [1, 1, 1, 1],
                        "input_size": [32, 32], "embedding_size": 32}, data="synthetic:faces",
                        data_options={"num_classes": 8, "samples_per_class": 8}, epochs=1, batch_size=16,
                        lr=0.05, out="run", hooks=hooks)
    conv = fcbench.convert(fcbench.ConvertConfig(checkpoint=str(run), to=["onnx"]))
    (onnx,) = [o.file for o in conv.outcomes if o.status == "ok"]
    cells = fcbench.bench(artifacts=[str(onnx)], backends="onnxruntime:cpu", warmup=1, runs=5, min_seconds=0,
                          threads=1)
    quality = fcbench.evaluate(checkpoints=[str(onnx)], data="synthetic:pairs", data_options={"num_pairs": 40},
                               nfolds=2)
    with fcbench.Store("mine.sqlite") as store:
        for result in (run, cells, quality):
            store.add(result)
        kinds = sorted({r["kind"] for r in store.query()})
        lineages = sorted({r["lineage"] for r in store.query(kind="quality")})
    print(json.dumps({"kinds": kinds, "lineages": lineages, "cell": cells[0].status, "p50": cells[0].stats.p50_ms,
                      "accuracy": dict(quality.metrics)["accuracy"], "events": sorted(set(events)),
                      "modules": [m for m in ("fcbench.cli", "click", "rich.console") if m in sys.modules]}))
""")


def test_a_script_with_only_import_fcbench_trains_converts_benches_evaluates_and_stores(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    (tmp_path / "script.py").write_text(SCRIPT)
    p = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    import json

    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["kinds"] == ["quality", "speed", "train"]
    assert out["lineages"] == ["train(arcface)", "train(arcface) > convert(onnx)"]  # the artifact and its float parent
    assert out["cell"] == "ok" and out["p50"] > 0 and 0.0 <= out["accuracy"] <= 1.0
    assert out["events"] == ["epoch"]
    assert out["modules"] == []  # the library draws nothing: no CLI, no click, no rich console
    assert not (tmp_path / "results").exists()  # and stores nothing on its own
    assert p.stdout.strip().count("\n") == 0  # and prints nothing of its own (the one line is the script's)


def test_library_verbs_reject_unknown_keyword_options():
    import fcbench
    from fcbench.errors import FcbenchError

    with pytest.raises(FcbenchError, match="unknown key 'epoch' \\(did you mean 'epochs'\\?\\)"):
        fcbench.train(epoch=3)
    with pytest.raises(TypeError, match="options object or keyword options"):
        fcbench.bench(fcbench.BenchConfig(artifacts=["x"]), runs=3)


def _cli_long_options(verb) -> set[str]:
    from fcbench.cli.build import command

    names = set()
    for p in command(verb).params:
        names.add(p.name)
    return names - {"fmt"} - ({"store"} if verb.stores else set())


def test_every_registered_verb_is_a_recipe_step_with_its_commands_option_names(tmp_path):
    """The command's options and the recipe step's keys are one set (the options dataclass); each verb a recipe
    may use loads as a step, and an unknown key is refused naming the valid ones."""
    from fcbench.options import option_names
    from fcbench.recipes import load_recipe, recipe_verbs
    from fcbench.verbs import verbs

    every = verbs()
    assert {"train", "eval", "convert", "bench", "compress", "inspect", "profile", "results", "plugins",
            "run"} <= set(every)
    for name, verb in every.items():
        cli = _cli_long_options(verb)
        fields = {f.name for f in dataclasses.fields(verb.config) if f.metadata.get("cli", True)
                  and not f.name.startswith("_")}
        assert cli == fields, (name, cli ^ fields)
    minimal = {"train": {}, "eval": {"checkpoint": "m.pt"}, "convert": {"checkpoint": "m.pt", "to": "onnx"},
               "bench": {"artifacts": "m.onnx"}, "compress": {"checkpoint": "m.pt", "technique": "x"},
               "inspect": {"artifact": "m.onnx", "backend": "ort-cpu"}, "profile": {"model": "r18"},
               "results": {}, "distill": {"teacher": "r34"}, "prune": {"checkpoint": "m.pt"},
               "quantize": {"input": "m.pt", "method": "ort-dynamic"},
               "optimize": {"checkpoint": "m.pt", "backends": "ort-cpu", "max_drop": 1, "data": "synthetic:pairs"}}
    usable = recipe_verbs()
    assert set(minimal) <= set(usable)
    for name in usable:
        opts = minimal.get(name, {})
        recipe = tmp_path / f"{name}.yaml"
        body = ", ".join(f"{k}: '{v}'" for k, v in opts.items())
        recipe.write_text(f"defaults: {{store: s.sqlite}}\nsteps:\n  - {name}: {{{body}}}\n")
        if name == "compress":  # the technique and its options are checked when the recipe loads
            with pytest.raises(Exception, match="step 1 \\(compress\\): unknown technique 'x'"):
                load_recipe(recipe)
        else:
            (step,) = load_recipe(recipe).steps
            assert step.verb == name and isinstance(step.options, usable[name].config)
        assert set(option_names(usable[name].config)) >= set(opts)
        recipe.write_text(f"steps:\n  - {name}: {{{body}{', ' if body else ''}no_such_key: 1}}\n")
        with pytest.raises(Exception, match="unknown key 'no_such_key'.*valid keys"):
            load_recipe(recipe)


def test_profile_and_results_steps_run_in_a_recipe(cli, in_tmp):
    (in_tmp / "r.yaml").write_text("defaults: {store: s.sqlite}\nsteps:\n"
                                   "  - profile: {model: r18, model_options: {width: 0.125}, input_size: '56'}\n"
                                   "  - results: {all_runs: true, format: json}\n")
    from fcbench.results.store import Store

    with Store(in_tmp / "s.sqlite") as s:
        from fcbench.results.context import RunContext

        s.add(RunContext().row("quality", model="r18", metric="accuracy", value=0.5))
    r = cli("run", "r.yaml")
    assert r.code == 0, r.err
    assert "r18 at 56x56" in r.out and '"accuracy"' in r.out
