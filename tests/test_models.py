"""Model zoo through the public API: create/describe/profile, heads, weights, insightface keys."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from fcbench.errors import FcbenchError
from fcbench.models import HEADS, create, create_head, describe, profile, register_model

# Tiny settings per built-in model: (options, input H=W, output size).
TINY: dict[str, tuple[dict, int, int]] = {
    "r18": ({"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32], "embedding_size": 16}, 32, 16),
    "r34": ({"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32], "embedding_size": 16}, 32, 16),
    "r50": ({"width": 0.125, "layers": [1, 2, 1, 1], "input_size": [32, 32], "embedding_size": 16}, 32, 16),
    "r100": ({"width": 0.125, "layers": [1, 1, 2, 1], "input_size": [32, 32], "embedding_size": 16}, 32, 16),
    "mbf": ({"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32], "embedding_size": 16}, 32, 16),
    "resnet18": ({"width": 0.125, "layers": [1, 1, 1, 1], "num_classes": 5, "cifar_stem": True}, 32, 5),
    "resnet34": ({"width": 0.125, "layers": [1, 1, 1, 1], "num_classes": 5, "input_size": 32}, 32, 5),
    "resnet50": ({"width": 0.125, "layers": [1, 1, 1, 1], "num_classes": 5, "input_size": [32, 32]}, 32, 5),
    "mobilenet_v1": ({"width": 0.25, "layers": [1, 1, 1, 1, 1], "num_classes": 5, "input_size": 32}, 32, 5),
    "mobilenet_v2": ({"width": 0.25, "layers": [1, 1, 1, 1, 1, 1, 1], "num_classes": 5, "cifar_stem": True}, 32, 5),
    "densenet_bc": ({"width": 0.25, "layers": [2, 2, 2], "cifar_stem": True}, 32, 10),
    "alexnet": ({"width": 0.125, "hidden": 64, "input_size": [32, 32]}, 32, 10),
    "alexnet_separable": ({"width": 0.125, "hidden": 64, "num_classes": 7, "input_size": [32, 32]}, 32, 7),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_model_builds_tiny_and_runs(name):
    torch.manual_seed(0)
    opts, size, out = TINY[name]
    model = create(name, **opts)
    x = torch.randn(2, 3, size, size)
    y = model(x)
    assert y.shape == (2, out)
    y.float().pow(2).mean().backward()  # trains: gradients reach the first layer
    first = next(p for p in model.parameters() if p.requires_grad)
    assert first.grad is not None and torch.isfinite(first.grad).all()
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()
    # metadata, and the resolved options rebuild the same architecture
    assert model.fcbench_name == name and model.output_size == out
    assert tuple(model.input_size) == (size, size) and model.preprocessing.size == (size, size)
    assert model.fcbench_task == ("embedding" if name in ("r18", "r34", "r50", "r100", "mbf") else "classification")
    again = create(name, **json.loads(json.dumps(model.fcbench_options)))
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_builtin_models_are_all_covered():
    from fcbench.plugins import names

    assert set(TINY) <= set(names("model"))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v1", "mobilenet_v2", "densenet_bc", "alexnet",
                                  "alexnet_separable"])
def test_classifiers_run_at_224(name):
    torch.manual_seed(0)
    model = create(name, width=0.125, num_classes=3).eval()
    assert tuple(model.input_size) == (224, 224) and model.preprocessing.mean[0] == pytest.approx(0.485)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 3)


def test_mbf_variants():
    torch.manual_seed(0)
    relu = create("mbf", width=0.125, layers=[2, 1, 1, 1], act="relu", input_size=[48, 48], embedding_size=8)
    assert not any(isinstance(m, nn.PReLU) for m in relu.modules())
    assert relu(torch.randn(2, 3, 48, 48)).shape == (2, 8)
    with pytest.raises(FcbenchError, match="act"):
        create("mbf", act="gelu")


def test_defaults_and_describe():
    d = describe("r50")
    assert d["task"] == "embedding" and d["input_size"] == [112, 112]
    assert d["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and d["preprocessing"]["std"] == [0.5, 0.5, 0.5]
    assert d["options"] == {"width": 1.0, "layers": [3, 4, 14, 3], "embedding_size": 512, "dropout": 0.0,
                            "input_size": [112, 112]}
    c = describe("resnet18", cifar_stem=True)
    assert c["task"] == "classification" and c["input_size"] == [32, 32]
    assert c["options"]["num_classes"] == 10 and c["preprocessing"]["mean"][0] == pytest.approx(0.4914)
    assert describe("resnet18")["options"]["num_classes"] == 1000
    assert describe("alexnet", input_size=32)["options"]["cifar_stem"] is True
    assert describe("densenet_bc", cifar_stem=True)["options"]["growth_rate"] == 12
    json.dumps([describe(n) for n in TINY])


def test_unknown_model_and_option():
    with pytest.raises(FcbenchError, match="did you mean 'resnet18'"):
        create("resnet19")
    with pytest.raises(FcbenchError) as err:
        create("r18", widht=0.5)
    msg = str(err.value)
    assert "'widht'" in msg and "'r18'" in msg and "did you mean 'width'" in msg and "embedding_size" in msg
    assert "\n" not in msg
    with pytest.raises(FcbenchError, match="layers"):
        create("resnet18", layers=[1, 1])
    with pytest.raises(FcbenchError, match="width"):
        create("mobilenet_v2", width=0)
    with pytest.raises(FcbenchError, match="too small"):
        create("alexnet", cifar_stem=False, input_size=[32, 32])


def test_register_model_for_a_third_party_factory(monkeypatch):
    import fcbench.plugins

    @register_model(task="embedding", input_size=(64, 64))
    def tinynet(width: float = 1.0, embedding_size: int = 8, input_size: tuple[int, int] = (64, 64)) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 4, 3, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, embedding_size))

    monkeypatch.setattr(fcbench.plugins, "load", lambda kind, name: tinynet)
    model = create("tinynet", embedding_size=12)
    assert model.output_size == 12 and tuple(model.input_size) == (64, 64)
    assert model.preprocessing.size == (64, 64) and model.preprocessing.mean == (0.5, 0.5, 0.5)
    assert model.fcbench_options == {"width": 1.0, "embedding_size": 12, "input_size": [64, 64]}
    with pytest.raises(FcbenchError, match="no option 'depth'"):
        create("tinynet", depth=3)


# --- insightface compatibility --------------------------------------------------------------

def _bn(prefix: str, c: int) -> dict[str, list[int]]:
    return {f"{prefix}.weight": [c], f"{prefix}.bias": [c], f"{prefix}.running_mean": [c],
            f"{prefix}.running_var": [c], f"{prefix}.num_batches_tracked": []}


def insightface_r18_keys() -> dict[str, list[int]]:
    """Key -> shape of insightface arcface_torch iresnet18's state dict, written from its layout."""
    keys = {"conv1.weight": [64, 3, 3, 3], **_bn("bn1", 64), "prelu.weight": [64]}
    cin = 64
    for stage, c in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            keys.update(_bn(f"{p}.bn1", cin))
            keys[f"{p}.conv1.weight"] = [c, cin, 3, 3]
            keys.update(_bn(f"{p}.bn2", c))
            keys[f"{p}.prelu.weight"] = [c]
            keys[f"{p}.conv2.weight"] = [c, c, 3, 3]
            keys.update(_bn(f"{p}.bn3", c))
            if block == 0:
                keys[f"{p}.downsample.0.weight"] = [c, cin, 1, 1]
                keys.update(_bn(f"{p}.downsample.1", c))
            cin = c
    keys.update(_bn("bn2", 512))
    keys.update({"fc.weight": [512, 512 * 7 * 7], "fc.bias": [512]})
    keys.update(_bn("features", 512))
    return keys


def _state_from(keys: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: (torch.tensor(3) if not s else torch.rand(s, generator=g) * 0.01 + (1.0 if "running_var" in k else 0))
            for k, s in keys.items()}


def test_iresnet18_matches_insightface_keys(tmp_path):
    keys = insightface_r18_keys()
    assert len(keys) == 187
    assert keys["fc.weight"] == [512, 25088] and keys["layer4.1.bn3.running_var"] == [512]
    model = create("r18")
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == keys
    state = _state_from(keys)
    model.load_state_dict(state, strict=True)
    assert model.features.weight.requires_grad is False
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.eps == 1e-5 and m.momentum == 0.1 for m in norms)
    # the same file through weights=, plain and wrapped the way training scripts save it
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    loaded = create("r18", weights=str(path))
    assert torch.equal(loaded.fc.weight, state["fc.weight"])
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    assert torch.equal(create("r18", weights=path).layer4[1].bn3.running_var, state["layer4.1.bn3.running_var"])


def test_weights_errors(tmp_path):
    with pytest.raises(FcbenchError, match="does not exist"):
        create("r18", width=0.125, layers=[1, 1, 1, 1], weights=str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(FcbenchError, match="junk.pth"):
        create("r18", width=0.125, weights=str(junk))
    small = create("r18", width=0.125, layers=[1, 1, 1, 1], input_size=[32, 32])
    path = tmp_path / "small.pt"
    torch.save({"model": small.state_dict()}, path)
    with pytest.raises(FcbenchError) as err:
        create("r18", width=0.25, layers=[1, 1, 1, 1], input_size=[32, 32], weights=str(path))
    msg = str(err.value)
    assert "small.pt" in msg and "'r18'" in msg and "shape mismatch" in msg and "conv1.weight" in msg
    with pytest.raises(FcbenchError, match="missing .*layer1.1"):
        create("r18", width=0.125, layers=[2, 1, 1, 1], input_size=[32, 32], weights=str(path))
    again = create("r18", weights=str(path), **small.fcbench_options)  # checkpoint round trip
    assert torch.equal(again.fc.weight, small.fc.weight)


def test_mbf_matches_insightface_layout():
    model = create("mbf")
    state = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert len(state) == 333
    assert state["layers.0.layers.0.weight"] == [128, 3, 3, 3]
    assert state["layers.1.layers.0.weight"] == [128, 2, 3, 3]  # 64 groups of 2 channels
    assert state["layers.6.layers.1.layers.0.weight"] == [512, 1, 3, 3]
    assert state["layers.7.layers.1.layers.2.layers.1.running_var"] == [256]
    assert state["conv_sep.layers.0.weight"] == [512, 256, 1, 1]
    assert state["features.layers.0.layers.0.weight"] == [512, 1, 7, 7]
    assert state["features.layers.2.weight"] == [512, 512] and "features.layers.2.bias" not in state
    assert state["features.layers.3.running_var"] == [512]


# --- parameter and MAC counts ---------------------------------------------------------------

def iresnet_params(layers: list[int], embedding: int = 512) -> int:
    """Closed-form parameter count of insightface's IResNet at 112x112."""
    total = 3 * 64 * 9 + 2 * 64 + 64
    cin = 64
    for c, n in zip((64, 128, 256, 512), layers, strict=True):
        for i in range(n):
            total += 2 * cin + cin * c * 9 + 2 * c + c + c * c * 9 + 2 * c
            if i == 0:
                total += cin * c + 2 * c
            cin = c
    return total + 2 * 512 + 512 * 49 * embedding + embedding + 2 * embedding


def test_full_size_profiles():
    torch.manual_seed(0)
    r18 = profile(create("r18"), (112, 112))
    assert r18["params"] == iresnet_params([2, 2, 2, 2]) == 24_025_600
    assert round(r18["macs"] / 1e9, 1) == 2.6  # insightface's "FLOPs 2.6" are MACs (ptflops)
    r50 = profile(create("r50"))
    assert r50["params"] == iresnet_params([3, 4, 14, 3]) == 43_590_848
    assert round(r50["macs"] / 1e9, 1) == 6.3 and r50["flops"] == 2 * r50["macs"]
    rn18 = profile(create("resnet18"), (224, 224))
    assert rn18["params"] == 11_689_512 and rn18["macs"] == 1_814_073_344  # torchvision: 1.81 G
    mv2 = profile(create("mobilenet_v2"), (224, 224))
    assert mv2["params"] == 3_504_872 and 300e6 < mv2["macs"] < 301e6  # torchvision: 0.30 G
    mbf = profile(create("mbf"))
    assert mbf["params"] == 2_059_520 and 0.43e9 < mbf["macs"] < 0.45e9  # insightface: "mobilefacenet-0.45G"


def test_profile_counts_exactly_and_restores_mode():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8*8*8 outputs x 3*9
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 512 outputs x 9
        nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(512, 10),
    )
    model.train()
    model[2].eval()
    out = profile(model, (8, 8), batch=2)
    assert out["macs"] == 2 * (512 * 27 + 512 * 9 + 512 * 10)
    assert out["params"] == sum(p.numel() for p in model.parameters()) and out["flops"] == 2 * out["macs"]
    assert model.training and not model[2].training

    class Attn(nn.Module):  # functional matmuls outside Linear/Conv modules count too
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 4, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.proj(x.flatten(2).transpose(1, 2))  # (1, 6, 4)
            return t @ t.transpose(1, 2)  # (1, 6, 6) x 4

    assert profile(Attn(), (2, 3), channels=4)["macs"] == 6 * 4 * 4 + 6 * 6 * 4


# --- heads ----------------------------------------------------------------------------------

def test_heads_factory():
    assert set(HEADS) == {"softmax", "arcface", "cosface"}
    head = create_head("softmax", 16, 5)
    assert head(torch.randn(3, 16), torch.tensor([0, 1, 2])).shape == (3, 5)
    arc = create_head("arcface", 16, 5)
    assert arc.weight.shape == (5, 16) and arc.s == 64.0 and arc.m == 0.5
    cos = create_head("cosface", 16, 5)
    assert cos.s == 64.0 and cos.m == pytest.approx(0.4)
    with pytest.raises(FcbenchError, match="did you mean 'arcface'"):
        create_head("arcfce", 16, 5)
    with pytest.raises(FcbenchError, match="no option 'margin'"):
        create_head("arcface", 16, 5, margin=0.3)


def test_arcface_margin():
    torch.manual_seed(0)
    head = create_head("arcface", 8, 4, s=10.0, m=0.5)
    emb = torch.randn(6, 8)
    labels = torch.tensor([0, 1, 2, 3, 0, -1])
    plain = head(emb)  # inference: scaled cosine, no margin
    cos = torch.nn.functional.normalize(emb) @ torch.nn.functional.normalize(head.weight).T
    assert torch.allclose(plain, 10.0 * cos, atol=1e-5)
    logits = head(emb, labels)
    rows = torch.arange(5)
    target, c = logits[rows, labels[:5]], cos[rows, labels[:5]]
    theta = torch.acos(c)
    expected = torch.where(theta + 0.5 < math.pi, torch.cos(theta + 0.5), c - 0.5 * math.sin(0.5))
    assert torch.allclose(target, 10.0 * expected, atol=1e-4)
    assert (target < 10.0 * c).all()  # the margin lowers the target logit
    mask = torch.ones_like(logits, dtype=torch.bool)
    mask[rows, labels[:5]] = False
    assert torch.allclose(logits[mask], plain[mask], atol=1e-5)  # other classes and label -1 untouched
    # past theta + m = pi: the monotone fallback cos(theta) - m * sin(m)
    far = head(-head.weight[:1].detach(), torch.tensor([0]))
    assert far[0, 0].item() == pytest.approx(10.0 * (-1.0 - 0.5 * math.sin(0.5)), abs=1e-3)
    # per-sample margins: 0 gives the plain cosine, 0.5 the default
    margin = torch.tensor([0.0, 0.5, 0.2, 0.0, 0.5, 0.3])
    per = head(emb, labels, margin=margin)
    assert torch.allclose(per[0], plain[0], atol=1e-5) and torch.allclose(per[1], logits[1], atol=1e-5)
    assert per[2, 2] > logits[2, 2] and per[2, 2] < plain[2, 2]
    per.sum().backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


def test_cosface_margin():
    torch.manual_seed(0)
    head = create_head("cosface", 8, 3)
    emb, labels = torch.randn(4, 8), torch.tensor([2, 0, 1, 2])
    plain, logits = head(emb), head(emb, labels)
    rows = torch.arange(4)
    assert torch.allclose(logits[rows, labels], plain[rows, labels] - 64.0 * 0.4, atol=1e-4)
