from __future__ import annotations

import re

import pytest
from conftest import REPO

from fcbench.errors import FcbenchError
from fcbench.recipes import load_recipe
from fcbench.results import Store

QUICKSTART = REPO / "recipes" / "quickstart.yaml"


def write(tmp_path, text: str):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_every_shipped_recipe_validates(cli):
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        r = cli("run", path, "--check")
        assert r.code == 0, (path, r.err)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("steps:\n  - train: {epochs: 1, bacth_size: 4}\n", "unknown key 'bacth_size' (did you mean 'batch_size'?)"),
        ("steps:\n  - trian: {}\n", "unknown verb 'trian' (did you mean 'train'?)"),
        ("step:\n  - train: {}\n", "unknown key 'step' (did you mean 'steps'?)"),
        ("steps: []\n", "non-empty list"),
        ("steps:\n  - eval: {checkpoint: '${ot}/m.pt'}\nvars: {out: x}\n", "unknown variable '${ot}'"),
        ("steps:\n  - train: {epochs: 0}\n", "epochs must be >= 1"),
        ("steps:\n  - train: {epochs: [1\n", "not valid YAML"),
    ],
)
def test_recipe_errors_name_key_and_file(cli, tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(FcbenchError) as err:
        load_recipe(p)
    assert needle in str(err.value) and str(p) in str(err.value)
    r = cli("run", p)
    assert r.code == 2 and needle in r.err and len(r.err.strip().splitlines()) == 1


def test_defaults_vars_and_overrides(tmp_path):
    p = write(tmp_path, "vars: {out: a}\ndefaults: {store: s.sqlite, seed: 3}\n"
                        "steps:\n  - train: {out: '${out}/t'}\n  - eval: {checkpoint: '${out}/t/model.pt'}\n")
    rec = load_recipe(p, {"out": "b"})
    (verb1, train), (verb2, ev) = rec.steps
    assert (verb1, train.out, train.store, train.seed) == ("train", "b/t", "s.sqlite", 3)
    assert (verb2, ev.checkpoint, ev.store) == ("eval", "b/t/model.pt", "s.sqlite")  # eval takes no seed
    with pytest.raises(FcbenchError, match="no such variable"):
        load_recipe(p, {"ou": "b"})


def test_recipe_runs_train_eval_results(cli, in_tmp):
    p = write(in_tmp, """
name: mini
vars: {out: runs/mini}
defaults: {store: s.sqlite}
steps:
  - train:
      model: r18
      model_options: {width: 0.125, layers: [1, 1, 1, 1], input_size: [32, 32], embedding_size: 16}
      data: synthetic:faces
      data_options: {num_classes: 4, samples_per_class: 8}
      epochs: 1
      batch_size: 8
      out: ${out}
  - eval: {checkpoint: '${out}/model.pt', data: synthetic:pairs, data_options: {num_pairs: 40}, nfolds: 2}
  - results: {format: csv}
""")
    r = cli("run", p)
    assert r.code == 0, r.err
    assert "accuracy" in r.out and "run_id" in r.out
    run_id = re.search(r"run id (\S+)", r.err).group(1)
    with Store(in_tmp / "s.sqlite") as s:
        rows = s.query(run_id=run_id)
    assert {r["kind"] for r in rows} == {"train", "quality"} and all(r["recipe"] == "mini" for r in rows)


@pytest.mark.slow
def test_quickstart_learns(cli, in_tmp):
    """The README's main job: trained verification accuracy clearly beats the untrained weights."""
    r = cli("run", QUICKSTART, "--set", "out=runs/q")
    assert r.code == 0, r.err
    with Store(in_tmp / "results" / "fcbench.sqlite") as s:
        acc = [row["value"] for row in s.query(kind="quality", metric="accuracy")]
    init_acc, trained_acc = acc
    assert trained_acc > init_acc + 0.1, (init_acc, trained_acc)
    assert trained_acc > 0.85
