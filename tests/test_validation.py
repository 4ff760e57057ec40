"""Every option's type and range is checked where options are made, the same way for the command line,
recipes (``run --check``) and the library: a bad value is one line naming the option (and, in a recipe,
the file, step and key), exit code 2, before anything runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

import fcbench
from fcbench.errors import FcbenchError
from fcbench.options import BenchConfig, ConvertConfig, TrainConfig


def one_line_error(r, *needles: str) -> None:
    assert r.code == 2, (r.code, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.err, r.err
    for needle in needles:
        assert needle in r.err, (needle, r.err)


CLI_CASES = [
    # (command line, what the error must name)
    (["train", "--epochs", "ten"], "--epochs must be an integer, got 'ten'"),
    (["train", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["train", "--batch-size", "0"], "--batch-size must be in [1, 65536], got 0"),
    (["train", "--lr", "0"], "--lr must be > 0"),
    (["train", "--lr", "nan"], "--lr must be a finite number"),
    (["train", "--head-lr", "-1"], "--head-lr must be > 0"),
    (["train", "--momentum", "1.5"], "--momentum must be in [0, 1)"),
    (["train", "--momentum", "-0.1"], "--momentum must be in [0, 1)"),
    (["train", "--gamma", "0"], "--gamma must be in (0, 1]"),
    (["train", "--gamma", "3"], "--gamma must be in (0, 1]"),
    (["train", "--weight-decay", "-1"], "--weight-decay must be in [0, 1]"),
    (["train", "--warmup-epochs", "-1"], "--warmup-epochs must be >= 0"),
    (["train", "--epochs", "2", "--warmup-epochs", "3"], "--warmup-epochs must be <= epochs (2)"),
    (["train", "--max-steps", "0"], "--max-steps must be >= 1"),
    (["train", "--workers", "-1"], "--workers must be in [0, 256]"),
    (["train", "--seed", "-1"], "--seed must be in [0, 4294967295]"),
    (["train", "--threads", "0"], "--threads must be in [1, 1024]"),
    (["train", "--optimizer", "sdg"], "--optimizer must be one of sgd, adamw, got 'sdg' (did you mean 'sgd'?)"),
    (["train", "--schedule", "linear"], "--schedule must be one of step, cosine, constant"),
    (["train", "--amp", "maybe"], "--amp must be one of auto, on, off"),
    (["train", "--head", "arcfase"], "--head must be one of arcface, cosface, softmax, got 'arcfase' (did you mean"),
    (["train", "--milestones", "0,5"], "--milestones values must be >= 1"),
    (["train", "--milestones", "a"], "--milestones must be comma-separated integers"),
    (["train", "-o", "input_size=100000"], "--model-opt input_size must be sizes in 1..4096"),
    (["train", "--model-opt", "input_size=[4096,4096,3]"], "--model-opt input_size must be H or HxW"),
    (["eval", "m.pt", "--batch-size", "-3"], "--batch-size must be in [1, 65536]"),
    (["eval", "m.pt", "--nfolds", "0"], "--nfolds must be in [1, 1000]"),
    (["eval", "m.pt", "--workers", "-2"], "--workers must be in [0, 256]"),
    (["eval", "m.pt", "--threads", "-1"], "--threads must be in [1, 1024]"),
    (["eval", "m.pt", "--protocol", "verif"], "--protocol must be one of"),
    (["eval", "m.pt", "--max-drop", "-1"], "--max-drop must be in [0, 100]"),
    (["bench", "m.onnx", "--threads", "0"], "--threads must be in [1, 1024], got 0"),
    (["bench", "m.onnx", "--runs", "0"], "--runs must be >= 1"),
    (["bench", "m.onnx", "--runs", "many"], "--runs must be an integer, got 'many'"),
    (["bench", "m.onnx", "--warmup", "-1"], "--warmup must be >= 0"),
    (["bench", "m.onnx", "--min-seconds", "-1"], "--min-seconds must be >= 0"),
    (["bench", "m.onnx", "--max-seconds", "0"], "--max-seconds must be > 0"),
    (["bench", "m.onnx", "--batch", "0"], "--batch must be in [1, 4096]"),
    (["bench", "m.onnx", "--require-placement", "1.5"], "--require-placement must be in [0, 1]"),
    (["bench", "m.onnx", "--worker-timeout", "0"], "--worker-timeout must be > 0"),
    (["bench", "m.onnx", "--precision", "fp64"], "--precision must be one of f32, bf16, f16, int8"),
    (["bench", "m.onnx", "--isolation", "thread"], "--isolation must be one of subprocess, inprocess"),
    (["bench", "m.onnx", "--infer-manifest", "--input-shape", "1x3x99999x1"], "--input-shape must be sizes in 1..4096"),
    (["bench", "m.onnx", "--infer-manifest", "--input-shape", "64x64x4096x4096"], "--input-shape 64x64x4096x4096 is"),
    (["bench", "m.onnx", "--infer-manifest", "--input-shape", "1x3x4096x4096", "--batch", "64"], "--batch 64x3x4096"),
    (["bench", "m.onnx", "--preprocessing", "fase"], "--preprocessing must be one of face, imagenet, cifar"),
    (["profile", "r18", "--input-size", "100000"], "--input-size must be sizes in 1..4096"),
    (["profile", "r18", "--input-size", "0"], "--input-size must be sizes in 1..4096"),
    (["profile", "r18", "--input-size", "big"], "--input-size must be sizes like 112 or 112x96"),
    (["profile", "r18", "-o", "input_size=[0,5]"], "--model-opt input_size must be sizes in 1..4096"),
    (["results", "--limit", "0"], "--limit must be >= 1"),
    (["compress", "m.pt", "--technique", "x", "--threads", "0"], "--threads must be in [1, 1024]"),
    (["compress", "m.pt", "--technique", "x", "--seed", "-5"], "--seed must be in [0, 4294967295]"),
    (["inspect", "m.onnx", "--backend", "ort-cpu", "--threads", "0"], "--threads must be in [1, 1024]"),
    (["convert", "m.pt", "--to", "onnx", "--opt", "onnx.opsett=17"],
     "--opt onnx.opsett is unknown (did you mean 'opset'?)"),
    (["convert", "m.pt", "--to", "onnx", "--opt", "onnx.opset=30"], "--opt onnx.opset must be in [9, 23], got 30"),
    (["convert", "m.pt", "--to", "onnx", "--opt", "onnx.opset=x"], "--opt onnx.opset must be an integer, got 'x'"),
    (["convert", "m.pt", "--to", "onnx", "--opt", "onnx.exporter=tf"], "--opt onnx.exporter must be one of"),
    (["convert", "m.pt", "--to", "onnx", "--opt", "onnx.simplify=maybe"], "--opt onnx.simplify must be true or false"),
    (["convert", "m.pt", "--to", "onnx", "--opt", "onxx.opset=17"], "--opt onxx names no format in 'to' (onnx) (did"),
    (["convert", "m.pt", "--to", "openvino", "--opt", "openvino.source=tf"], "--opt openvino.source must be one of"),
    (["convert", "m.pt", "--to", "openvino", "--opt", "openvino.opset=5"], "--opt openvino.opset must be in [9, 23]"),
    (["convert", "m.pt", "--to", "tflite", "--opt", "tflite.strict_export=sometimes"],
     "--opt tflite.strict_export must be one of"),
    (["convert", "m.pt", "--to", "pte", "--opt", "pte.delegate=xnnpak"],
     "--opt pte.delegate must be one of xnnpack, none, got 'xnnpak' (did you mean 'xnnpack'?)"),
    (["convert", "m.pt", "--to", "ptl", "--opt", "ptl.method=jit"], "--opt ptl.method must be one of trace, script"),
    (["convert", "m.keras", "--to", "tflite", "--opt", "tflite.nhwc=true"],
     "--opt tflite.nhwc is unknown; tflite options: optimize, allow_select_tf_ops"),
    (["convert", "m.keras", "--to", "tflite", "--opt", "tflite.optimize=latncy"],
     "--opt tflite.optimize must be one of latency, size, default, none, got 'latncy' (did you mean 'latency'?)"),
    (["convert", "m.keras", "--to", "tflite", "--preprocessing", "fase"], "--preprocessing must be one of"),
]


@pytest.mark.parametrize("args, needle", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_a_bad_value_on_the_command_line_is_one_line_naming_the_option(cli, in_tmp, args, needle):
    r = cli(*args)
    one_line_error(r, f"{args[0]}: {needle}")
    assert not any(in_tmp.iterdir()), list(in_tmp.iterdir())  # nothing ran, nothing was written


RECIPE_CASES = [
    # (step, what the error must name after "FILE: step 1 (VERB): ")
    ("train: {epochs: ten}", "epochs must be an integer, got 'ten'"),
    ("train: {lr: [1]}", "lr must be a number, got [1]"),
    ("train: {momentum: 1.5}", "momentum must be in [0, 1)"),
    ("train: {batch_size: 0}", "batch_size must be in [1, 65536]"),
    ("train: {amp: maybe}", "amp must be one of auto, on, off"),
    ("train: {optimizer: true}", "optimizer must be a string, got True"),
    ("train: {milestones: {a: 1}}", "milestones must be a string or a list"),
    ("train: {model_options: 5}", "model_options must be KEY=VALUE options or a mapping"),
    ("train: {model_options: {input_size: 100000}}", "model_options input_size must be sizes in 1..4096"),
    ("eval: {checkpoint: m.pt, nfolds: 0}", "nfolds must be in [1, 1000]"),
    ("eval: {checkpoint: m.pt, workers: -1}", "workers must be in [0, 256]"),
    ("bench: {artifacts: m.onnx, threads: 0}", "threads must be in [1, 1024]"),
    ("bench: {artifacts: m.onnx, batch: -1}", "batch must be in [1, 4096]"),
    ("bench: {artifacts: m.onnx, input_shape: [1, 3, a, 4]}", "input_shape must be sizes like 1x3x112x112"),
    ("bench: {artifacts: m.onnx, infer_manifest: sometimes}", "infer_manifest must be true or false"),
    ("convert: {checkpoint: m.pt, to: onnx, options: {onnx: {opsett: 17}}}",
     "options onnx.opsett is unknown (did you mean 'opset'?)"),
    ("convert: {checkpoint: m.pt, to: onnx, options: {onnx: {opset: 99}}}", "options onnx.opset must be in [9, 23]"),
    ("convert: {checkpoint: m.pt, to: onnx, options: {onxx: {opset: 17}}}", "options onxx names no format in 'to'"),
    ("convert: {checkpoint: m.pt, to: onnx, options: {onnx: 17}}", "options are {format: {key: value}}"),
    ("compress: {checkpoint: m.pt, technique: nope}", "unknown technique 'nope'"),
    ("profile: {model: r18, input_size: 100000}", "input_size must be sizes in 1..4096"),
    ("results: {limit: 0}", "limit must be >= 1"),
    ("eval: {checkpoint: m.pt, store: r.yaml}", "results store r.yaml cannot be opened as SQLite"),
    ("train: {epochs: 1, out: '${b}/x'}", "out: unknown variable '${b}'"),
    ("train: {epochs: 1, out: '${my-dir}/x'}", "out: '${my-dir}' is not a variable reference"),
    ("train: {epochs: 1, model_options: {width: '${wdth}'}}", "model_options.width: unknown variable '${wdth}'"),
]


@pytest.mark.parametrize("step, needle", RECIPE_CASES, ids=[s for s, _ in RECIPE_CASES])
def test_run_check_names_file_step_and_key_of_a_bad_value(cli, in_tmp, step, needle):
    verb = step.split(":")[0]
    p = in_tmp / "r.yaml"
    p.write_text(f"vars: {{out: runs}}\nsteps:\n  - results: {{}}\n  - {step}\n")
    r = cli("run", p, "--check")
    one_line_error(r, f"{p}: step 2 ({verb}): {needle}")


@pytest.mark.parametrize("vars_, needle", [
    ("{out: '${b}/y'}", "vars: out: unknown variable '${b}'"),
    ("{a: '${b}', b: '${a}'}", "vars: a -> b -> a: a variable refers to itself"),
    ("{my-dir: x}", "vars: 'my-dir' cannot be referred to"),
    ("[a, b]", "'vars' must be a mapping"),
])
def test_variables_that_never_resolve_are_errors_at_check_time(cli, in_tmp, vars_, needle):
    p = in_tmp / "r.yaml"
    p.write_text(f"vars: {vars_}\nsteps:\n  - train: {{epochs: 1, out: runs}}\n")
    one_line_error(cli("run", p, "--check"), f"{p}: {needle}")


def test_set_values_are_checked_like_the_recipe_s_own(cli, in_tmp):
    p = in_tmp / "r.yaml"
    p.write_text("vars: {out: runs, e: 1}\nsteps:\n  - train: {epochs: '${e}', out: '${out}/x'}\n")
    assert cli("run", p, "--check").code == 0
    one_line_error(cli("run", p, "--check", "--set", "e=ten"), f"{p}: step 1 (train): epochs must be an integer")
    one_line_error(cli("run", p, "--check", "--set", "out=${nope}"), f"{p}: --set out: unknown variable '${{nope}}'")


def test_values_yaml_reads_oddly_are_taken_as_meant(in_tmp):
    """``lr: 1e-3`` is a string to YAML 1.1 and ``amp: off`` a boolean; variables may refer to variables."""
    from fcbench.recipes import load_recipe

    p = in_tmp / "r.yaml"
    p.write_text("vars: {base: runs, out: '${base}/x', size: [32, 32], s: '${size}'}\nsteps:\n"
                 "  - train: {lr: 1e-3, amp: off, epochs: '3', out: '${out}', model_options: {input_size: '${s}'}}\n")
    (step,) = load_recipe(p).steps
    cfg = step.options
    assert (cfg.lr, cfg.amp, cfg.epochs, cfg.out) == (0.001, "off", 3, "runs/x")
    assert cfg.model_options == {"input_size": [32, 32]}


def test_every_shipped_recipe_still_passes_check(cli):
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        r = cli("run", path, "--check")
        assert r.code == 0, (path, r.err)


@pytest.mark.parametrize("make, needle", [
    (lambda: TrainConfig(epochs=0), "TrainConfig: epochs must be >= 1, got 0"),
    (lambda: TrainConfig(lr="fast"), "TrainConfig: lr must be a number, got 'fast'"),
    (lambda: BenchConfig(artifacts=["m.onnx"], threads=-2), "BenchConfig: threads must be in [1, 1024]"),
    (lambda: fcbench.train(epochs=0), "train: epochs must be >= 1, got 0"),
    (lambda: fcbench.bench(artifacts=["m.onnx"], warmup=-1), "bench: warmup must be >= 0"),
    (lambda: fcbench.convert(ConvertConfig(checkpoint="m.pt", to=["onnx"], options={"onnx": {"opsett": 17}})),
     "convert: options onnx.opsett is unknown (did you mean 'opset'?)"),
    (lambda: fcbench.profile(model="r18", input_size="100000"), "profile: input_size must be sizes in 1..4096"),
])
def test_the_library_checks_the_same_way(in_tmp, make, needle):
    with pytest.raises(FcbenchError) as err:
        make()
    assert needle in str(err.value) and err.value.exit_code == 2
    assert not any(in_tmp.iterdir())


def test_options_changed_after_they_were_made_are_checked_before_a_verb_runs(in_tmp):
    cfg = BenchConfig(artifacts=["m.onnx"])
    cfg.runs = 0
    with pytest.raises(FcbenchError, match="runs must be >= 1, got 0"):
        fcbench.bench(cfg)
    assert BenchConfig(artifacts=["m.onnx"], runs="5", min_seconds="0.5").runs == 5  # strings that spell numbers


def test_choices_kept_here_match_the_modules_that_own_them():
    from fcbench.infer import PRESETS
    from fcbench.models.heads import HEADS
    from fcbench.options import HEADS as OPTION_HEADS
    from fcbench.options import PREPROCESSINGS

    assert tuple(HEADS) == OPTION_HEADS and tuple(PRESETS) == PREPROCESSINGS


def test_checking_exporter_options_imports_no_torch():
    code = ("import sys\nfrom fcbench.options import ConvertConfig\n"
            "for fmt in ('onnx', 'openvino', 'tflite', 'ptl', 'pte'):\n"
            "    ConvertConfig(checkpoint='m.pt', to=[fmt], options={fmt: {}}).validate()\n"
            "ConvertConfig(checkpoint='m.pt', to=['onnx'], options={'onnx': {'opset': '17'}}).validate()\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_a_convert_option_is_read_as_its_type(in_tmp):
    cfg = ConvertConfig(checkpoint="m.pt", to=["onnx"], options={"onnx": {"opset": "17", "simplify": "false"}})
    assert cfg.validate().options == {"onnx": {"opset": 17, "simplify": False}}
