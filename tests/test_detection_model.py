"""The SSD-MobileNetV2 detector's parts: the network and its split, anchors, boxes, NMS, the MultiBox
loss, and the detection metrics against a hand-computed example."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import fcbench
from fcbench.detection import anchors_for, decode, decode_boxes, encode, feature_maps, iou, nms
from fcbench.detection.loss import match, multibox_loss
from fcbench.errors import FcbenchError
from fcbench.metrics.detection import coco_ap, detection_metrics, voc_ap

TINY = {"width": 0.25, "input_size": 64, "num_classes": 3}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return fcbench.create_model("ssd-mobilenetv2", **TINY).eval()


def test_default_model_is_ssdlite_300_with_six_maps():
    """300x300 in: maps 19, 10, 5, 3, 2, 1 (taps at stride 16 and 32 and four extra layers), 6 anchors a cell."""
    from fcbench.models import describe

    info = describe("ssd-mobilenetv2")
    assert info["task"] == "detection" and info["input_size"] == [300, 300]
    assert feature_maps([300, 300], 4) == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert anchors_for(info["options"]).shape == (6 * (361 + 100 + 25 + 9 + 4 + 1), 4)


def test_output_is_one_tensor_of_anchor_rows(tiny):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = tiny(x)
    a = anchors_for(tiny.fcbench_options)
    assert isinstance(y, torch.Tensor) and tuple(y.shape) == (2, len(a), 4 + 1 + 3)
    assert feature_maps([64, 64], 4) == [(4, 4), (2, 2), (1, 1)]  # the extra layers stop at 1x1
    assert len(tiny.extras) == 1 and len(a) == 6 * (16 + 4 + 1)
    assert np.all((a >= 0) & (a <= 1))


def test_anchor_order_matches_output_rows():
    """Map 0's box predictor replaced by one that outputs 1.0 only at (row 1, col 2, anchor kind 3, dx):
    exactly the output row of the anchor centred on that cell lights up."""
    model = fcbench.create_model("ssd-mobilenetv2", **TINY).eval()

    class Hot(torch.nn.Module):
        def forward(self, f):
            out = torch.zeros(f.shape[0], 6 * 4, f.shape[2], f.shape[3])
            out[:, 3 * 4 + 0, 1, 2] = 1.0
            return out

    for heads in (model.box_heads, model.cls_heads):
        for i in range(len(heads)):
            heads[i] = Hot() if heads is model.box_heads and i == 0 else _Zero(heads[i])
    with torch.no_grad():
        y = model(torch.randn(1, 3, 64, 64))[0]
    row = (1 * 4 + 2) * 6 + 3  # map 0 is 4x4, 6 anchor kinds per cell
    assert torch.nonzero(y).tolist() == [[row, 0]]
    cx, cy = anchors_for(model.fcbench_options)[row][:2]
    assert (cx, cy) == pytest.approx(((2 + 0.5) / 4, (1 + 0.5) / 4))


class _Zero(torch.nn.Module):
    def __init__(self, like: torch.nn.Module) -> None:
        super().__init__()
        self.like = like

    def forward(self, f):
        return torch.zeros_like(self.like(f))


@pytest.mark.parametrize("m", [0, 11, 13])
def test_split_at_front_then_back_is_the_model(tiny, m):
    x = torch.randn(2, 3, 64, 64)
    front, back = tiny.split_at(m)
    with torch.no_grad():
        feat = front(x)
        assert torch.equal(back(feat), tiny(x))
    assert isinstance(front, torch.nn.Module) and isinstance(back, torch.nn.Module)
    assert len(front) == m + 1
    assert not front.training and not back.training  # the model's mode: exporting a part keeps it in eval


@pytest.mark.parametrize("m", [14, 18, -1, 30])
def test_split_at_or_after_the_first_tap_is_refused(tiny, m):
    with pytest.raises(FcbenchError, match=r"pick m in 0\.\.13") as exc:
        tiny.split_at(m)
    assert "\n" not in str(exc.value)


def test_split_parts_export_to_onnx(tiny, tmp_path):
    """Each part exports on its own (motion gating runs them as two artifacts) and they chain to the model's output."""
    pytest.importorskip("onnx", reason="onnx is not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    x = torch.randn(1, 3, 64, 64)
    front, back = tiny.split_at(11)
    with torch.no_grad():
        feat = front(x)
        want = back(feat).numpy()
    from fcbench.conversion.onnx import OnnxExporter  # what convert uses

    OnnxExporter().export(front, x, tmp_path / "front.onnx", {})
    OnnxExporter().export(back, feat, tmp_path / "back.onnx", {})

    def run(name: str, arr: np.ndarray) -> np.ndarray:
        sess = ort.InferenceSession(str(tmp_path / name))
        return sess.run(None, {sess.get_inputs()[0].name: arr})[0]

    got = run("back.onnx", run("front.onnx", x.numpy()))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_bad_options_are_one_line():
    for opts, what in (({"num_classes": 0}, "num_classes"), ({"input_size": 16}, "too small"),
                       ({"min_scale": 0.9, "max_scale": 0.5}, "min_scale"), ({"num_clases": 2}, "num_classes")):
        with pytest.raises(FcbenchError, match=what) as exc:
            fcbench.create_model("ssd-mobilenetv2", **opts)
        assert "\n" not in str(exc.value)


# --- boxes, NMS, decoding (numpy) --------------------------------------------------------------

def test_iou_by_hand():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 5], [5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou(a, b)[0], [0.5, 25 / 175, 0.0, 1.0])


def test_encode_decode_round_trip_and_variances():
    anchors = np.array([[0.5, 0.5, 0.2, 0.4]])
    box = np.array([[0.42, 0.3, 0.62, 0.7]])  # centre (0.52, 0.5), w 0.2, h 0.4
    off = encode(box, anchors)
    np.testing.assert_allclose(off, [[0.02 / (0.2 * 0.1), 0.0, 0.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(decode_boxes(off, anchors), box, atol=1e-12)
    wide = np.array([[0.3, 0.3, 0.7, 0.7]])  # w 0.4 = 2x the anchor's: log(2) / 0.2
    assert encode(wide, anchors)[0, 2] == pytest.approx(np.log(2) / 0.2)


def test_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 9]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # 3 (0.95) suppresses 0 (IoU 0.9) and 1 (IoU 90/110 = 0.82); 2 is apart
    assert nms(boxes, scores, 0.45).tolist() == [3, 2]
    assert nms(boxes, scores, 0.85).tolist() == [3, 1, 2]  # 0 still goes (0.9 > 0.85); 1 stays (0.82)
    assert nms(boxes, scores, 0.45, top_k=1).tolist() == [3]


def test_decode_raw_rows_per_class():
    anchors = np.array([[0.25, 0.25, 0.5, 0.5], [0.3, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]], np.float32)
    raw = np.zeros((3, 4 + 1 + 2), np.float32)
    raw[:, 4] = 5.0  # background everywhere ...
    raw[0, 5] = raw[1, 5] = 10.0  # ... but anchors 0 and 1 say class 0 (they overlap: NMS keeps one)
    raw[2, 6] = 10.0  # anchor 2 says class 1
    raw[1, 5] = 9.0
    boxes, scores, labels = decode(raw, anchors)
    assert labels.tolist() == [0, 1]
    np.testing.assert_allclose(boxes, [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], atol=1e-6)
    p = np.exp(10) / (np.exp(10) + np.exp(5) + 1)
    np.testing.assert_allclose(scores, [p, p], rtol=1e-5)


def test_decoder_for_a_video_runner(tiny):
    """``decoder(options)`` decodes a batch-of-one raw output like ``decode`` with the model's anchors."""
    from fcbench.detection.postprocess import decoder

    with torch.no_grad():
        raw = tiny(torch.randn(1, 3, 64, 64)).numpy()
    got = decoder(tiny.fcbench_options, score_threshold=0.0)(raw)
    want = decode(raw[0], anchors_for(tiny.fcbench_options), score_threshold=0.0)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert len(got[0]) == 100  # max_detections


def test_bench_pipeline_postprocess_decodes_detections(tiny):
    """The app-like timing's postprocess stage decodes and NMSes a detector's output (not a softmax)."""
    from fcbench.benchmark.pipeline import postprocess
    from fcbench.detection.anchors import decode_config

    with torch.no_grad():
        raw = tiny(torch.randn(2, 3, 64, 64)).numpy()
    out = postprocess(raw, "detections", decode_config(tiny.fcbench_options))
    assert len(out) == 2 and all(len(o) == 3 and o[0].shape[1:] == (4,) for o in out)


def test_postprocess_needs_no_torch():
    """The bench worker on a device decodes without torch: the numpy modules import none."""
    code = ("import sys; import fcbench.detection.postprocess, fcbench.metrics.detection; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the MultiBox loss -------------------------------------------------------------------------

def test_match_best_anchor_and_iou_threshold():
    anchors = torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.3, 0.3, 0.5, 0.5], [0.75, 0.75, 0.2, 0.2],
                            [0.75, 0.75, 0.5, 0.5]])
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.7, 0.7, 0.8, 0.8]])
    cls, loc = match(boxes, torch.tensor([1, 0]), anchors)
    # anchor 0 is box 0 exactly; anchor 1 overlaps it 0.45^2 / (2 * 0.25 - 0.45^2) = 0.68 >= 0.5: also class 1 + 1;
    # box 1 (0.1 wide) overlaps anchor 2 (0.2 wide) only 0.25 < 0.5, but it is that box's best anchor: kept;
    # anchor 3 overlaps nothing enough: background
    assert cls.tolist() == [2, 2, 1, 0]
    assert torch.allclose(loc[0], torch.zeros(4), atol=1e-6)


def test_hard_negatives_three_per_positive():
    """One positive: its loss plus the 3 worst of the 9 negatives count, no other anchor."""
    anchors = torch.tensor([[0.05 + 0.1 * i, 0.5, 0.1, 0.1] for i in range(10)])
    targets = [{"boxes": torch.tensor([[0.0, 0.45, 0.1, 0.55]]), "labels": torch.tensor([0])}]
    raw = torch.zeros(1, 10, 6)
    raw[0, 1:, 5] = torch.arange(9, dtype=torch.float32)  # negatives 7, 8, 9 say "class" most: hardest
    got = multibox_loss(raw, targets, anchors)
    ce = torch.nn.functional.cross_entropy(raw[0, :, 4:], torch.zeros(10, dtype=torch.long), reduction="none")
    pos = torch.nn.functional.cross_entropy(raw[0, :1, 4:], torch.tensor([1]))
    assert got["conf"].item() == pytest.approx((pos + ce[7:].sum()).item(), rel=1e-6)
    assert got["loc"].item() == pytest.approx(0.0, abs=1e-6)


def test_loss_descends_to_the_boxes():
    """Gradient steps on a free raw tensor bring the decoded top box onto the ground truth."""
    a = anchors_for({"input_size": 64, "extra_layers": 4})
    raw = torch.zeros(1, len(a), 6, requires_grad=True)
    targets = [{"boxes": torch.tensor([[0.1, 0.2, 0.5, 0.7]]), "labels": torch.tensor([0])}]
    opt = torch.optim.Adam([raw], lr=0.1)
    first = None
    for _ in range(100):
        parts = multibox_loss(raw, targets, torch.from_numpy(a))
        loss = parts["loc"] + parts["conf"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    boxes, scores, labels = decode(raw.detach()[0].numpy(), a)
    assert labels[0] == 0 and scores[0] > 0.9
    assert iou(boxes[:1], np.array([[0.1, 0.2, 0.5, 0.7]]))[0, 0] > 0.95


# --- metrics: the hand-computed example --------------------------------------------------------

def _example():
    G = np.array
    gts = [(G([[0, 0, 10, 10], [0, 0, 4, 4]]), G([0, 1])),  # image A: cat G1, dog D1
           (G([[0, 0, 10, 10], [20, 20, 30, 30]]), G([0, 0]))]  # image B: cats G2, G3
    dets = [
        (G([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 4, 4], [0, 0, 3, 3]]), G([0.9, 0.7, 0.4, 0.99]),
         G([0, 0, 1, 2])),  # d1 cat, d3 cat (duplicate of G1), e2 dog, a bird (no bird anywhere)
        (G([[0, 0, 10, 5], [50, 50, 60, 60], [20, 20, 30, 29], [0, 0, 4, 4]]), G([0.8, 0.6, 0.3, 0.95]),
         G([0, 0, 0, 1])),  # d2 cat, d4 cat, d5 cat, e1 dog (no dog in B)
    ]
    return dets, gts


def test_metrics_hand_computed_example():
    """Two images; classes cat (0), dog (1), bird (2).

    Ground truth: A has cat G1 [0,0,10,10] and dog D1 [0,0,4,4]; B has cats G2 [0,0,10,10] and
    G3 [20,20,30,30]: 3 cats, 1 dog, no bird.

    Cat detections by score: d1 0.9 (A, = G1, IoU 1), d2 0.8 (B, [0,0,10,5]: IoU with G2 = 50/100 = 0.5),
    d3 0.7 (A, G1 again: a duplicate), d4 0.6 (B, [50,50,60,60]: nothing), d5 0.3 (B, [20,20,30,29]: IoU
    with G3 = 90/100 = 0.9).

    VOC AP@0.5, cat: TP TP FP FP TP; cumulative TP 1 2 2 2 3; precision 1, 1, 2/3, 1/2, 3/5; recall 1/3,
    2/3, 2/3, 2/3, 1. Precision made monotone from the right: 1, 1, 2/3, 3/5, 3/5. Area over the recall
    steps: 1/3 x 1 + 1/3 x 1 + 1/3 x 3/5 = 13/15.
    Dog: e1 0.95 (B: no dog, FP), e2 0.4 (A, = D1, TP): precision 0, 1/2; recall 0, 1 -> AP = 1 x 1/2.
    Bird has no ground truth: no AP, not in the mean. mAP@0.5 = (13/15 + 1/2) / 2 = 41/60.

    COCO (101 recall points r = 0, .01, .., 1; 34 points have r <= 1/3, 33 have 1/3 < r <= 2/3, 34 above):
    cat at IoU 0.5: envelope 1 up to recall 2/3, 3/5 above -> (34 + 33 + 34 x 0.6) / 101 = 87.4/101;
    at 0.55 .. 0.9 (8 thresholds) d2 is a FP: TP FP FP FP TP, precision 1, 1/2, 1/3, 1/4, 2/5, recall
    1/3 .. 1/3, 2/3 -> (34 + 33 x 0.4) / 101 = 47.2/101 each; at 0.95 d5 (0.9) is a FP too: 34/101.
    Cat = (87.4 + 8 x 47.2 + 34) / 1010 = 499/1010; dog = 1/2 at every threshold; mAP = (499/1010 + 1/2) / 2.

    Precision/recall at score >= 0.5: d1 TP, d2 TP, d3 FP, d4 FP, e1 FP, the bird FP: 2 of 6 detections,
    2 of 4 ground-truth boxes -> precision 1/3, recall 1/2.
    """
    dets, gts = _example()
    r = detection_metrics(dets, gts, 3, ["cat", "dog", "bird"])
    assert r.ap50 == pytest.approx({"cat": 13 / 15, "dog": 0.5})
    assert r.map50 == pytest.approx(41 / 60)
    assert r.ap["cat"] == pytest.approx(499 / 1010)
    assert r.ap["dog"] == pytest.approx(0.5)
    assert r.map == pytest.approx((499 / 1010 + 0.5) / 2)
    assert (r.precision50, r.recall50) == pytest.approx((1 / 3, 1 / 2))
    assert [name for name, _ in r.to_rows()] == ["map50", "map", "precision50", "recall50", "ap50/cat", "ap50/dog"]


def test_difficult_boxes_are_neither_hit_nor_miss():
    """One image, cats A [0,0,10,10] and B [20,20,30,30], B difficult. d1 0.9 on B: ignored; d2 0.8 on
    nothing: FP; d3 0.7 on A: TP. Curve FP, TP over 1 box: precision 0, 1/2, recall 0, 1 -> AP 1/2.
    Without the flag B counts: TP FP TP over 2 boxes, precision 1, 1/2, 2/3, recall 1/2, 1/2, 1 ->
    AP 1/2 x 1 + 1/2 x 2/3 = 5/6. Score >= 0.5: d2 FP, d3 TP (d1 ignored): precision 1/2, recall 1/1."""
    dets = [(np.array([[20, 20, 30, 30], [50, 50, 60, 60], [0, 0, 10, 10]]), np.array([0.9, 0.8, 0.7]),
             np.array([0, 0, 0]))]
    boxes, labels = np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 0])
    r = detection_metrics(dets, [(boxes, labels, np.array([False, True]))], 1)
    assert r.map50 == pytest.approx(0.5) and (r.precision50, r.recall50) == pytest.approx((0.5, 1.0))
    assert detection_metrics(dets, [(boxes, labels)], 1).map50 == pytest.approx(5 / 6)


def test_ap_curves_by_hand():
    assert voc_ap([0.5, 1.0], [1.0, 0.5]) == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    assert coco_ap([1.0], [1.0]) == 1.0
    assert coco_ap([], []) == 0.0
    perfect = detection_metrics([(np.array([[0, 0, 1, 1]]), np.array([0.9]), np.array([0]))],
                                [(np.array([[0, 0, 1, 1]]), np.array([0]))], 1)
    assert (perfect.map50, perfect.map, perfect.precision50, perfect.recall50) == (1.0, 1.0, 1.0, 1.0)
