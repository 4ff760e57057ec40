"""The trainer's loss hook: extra loss terms (distillation, ...) inside the one training loop."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from fcbench.artifact import read_manifest
from fcbench.data import open_dataset
from fcbench.errors import FcbenchError
from fcbench.results.store import Store
from fcbench.training.checkpoint import load_checkpoint
from fcbench.training.config import TrainConfig
from fcbench.training.loop import LossInputs, train

EMB, CLASSES = 16, 8
DATA = {"num_classes": CLASSES, "samples_per_class": 8}
TARGETS = torch.randn(CLASSES, EMB, generator=torch.Generator().manual_seed(123))  # a fixed target per class


def _cfg(tmp_path, name: str, **kw) -> TrainConfig:
    return TrainConfig(model="r18", model_options={"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32],
                                                   "embedding_size": EMB},
                       head="arcface", head_options={"s": 16.0, "m": 0.2}, data="synthetic:faces",
                       data_options=dict(DATA), epochs=3, batch_size=16, lr=0.05, seed=3, threads=2,
                       out=str(tmp_path / name), **kw)


class PullToTargets:
    """Pulls each student embedding toward its class's fixed target (an MSE term): the shape of a
    distillation loss whose teacher answers with a fixed embedding per identity."""

    name = "pull-to-targets"

    def __init__(self, weight: float) -> None:
        self.weight, self.calls = weight, 0

    def __call__(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        self.calls += 1
        assert inputs.outputs.shape == (inputs.x.shape[0], EMB) and inputs.logits.shape[1] == CLASSES
        return {"pull": self.weight * F.mse_loss(inputs.outputs, TARGETS.to(inputs.device)[inputs.y])}


def _distance(ckpt) -> float:
    """Mean squared distance of the saved model's embeddings of the training images to their class targets.
    BatchNorm uses batch statistics, as in the training steps: after a dozen steps the running
    statistics are still far from them, so eval-mode outputs would measure BatchNorm's warm-up."""
    model = load_checkpoint(ckpt).build_model().train()
    data = open_dataset("synthetic:faces", preprocessing=model.preprocessing, **DATA)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([int(data[i][1]) for i in range(len(data))])
    with torch.no_grad():
        return float(F.mse_loss(model(x), TARGETS[y]))


def test_loss_hook_terms_are_trained_and_reported(tmp_path):
    plain = train(_cfg(tmp_path, "plain"))
    hook = PullToTargets(weight=10.0)
    hooked = train(_cfg(tmp_path, "hooked"), loss_hook=hook)
    assert hook.calls == 3 * 4  # every step: 64 images in batches of 16, 3 epochs
    d_plain, d_hooked = _distance(plain), _distance(hooked)
    assert d_hooked < 0.6 * d_plain, (d_plain, d_hooked)
    with Store(tmp_path / "s.sqlite") as s:
        s.add(plain)
        s.add(hooked)
        rows = s.query(kind="train")
    plain_rows, hooked_rows = rows[:3], rows[3:]
    assert len(hooked_rows) == 3 and all("loss_terms" not in r["extra"] for r in plain_rows)
    for r in hooked_rows:
        terms = r["extra"]["loss_terms"]
        assert set(terms) == {"ce", "pull"} and r["value"] == pytest.approx(terms["ce"] + terms["pull"], rel=1e-5)
    assert hooked_rows[-1]["extra"]["loss_terms"]["pull"] < hooked_rows[0]["extra"]["loss_terms"]["pull"]
    assert read_manifest(hooked).lineage[-1].options["loss_hook"] == "pull-to-targets"
    assert "loss_hook" not in read_manifest(plain).lineage[-1].options


def test_loss_hook_must_return_named_scalars(tmp_path):
    with pytest.raises(FcbenchError, match="term 'ce' must be a scalar tensor named other than 'ce'"):
        train(_cfg(tmp_path, "bad", max_steps=1), loss_hook=lambda inputs: {"ce": inputs.outputs.sum()})
    with pytest.raises(FcbenchError, match="returned Tensor, not a dict"):
        train(_cfg(tmp_path, "bad2", max_steps=1), loss_hook=lambda inputs: inputs.outputs.sum())
