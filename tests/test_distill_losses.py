"""The distillation losses (fcbench.distillation.losses) against values worked out by hand.

Every expected value below is computed in the test from the definition, with plain math on
angles and probabilities written out, never by calling the loss's own formula again.
"""

from __future__ import annotations

import math

import pytest
import torch

from fcbench.distillation import losses as L
from fcbench.errors import FcbenchError


def _unit(*degrees: float, scale: float = 1.0) -> torch.Tensor:
    """2-d vectors at the given angles (degrees), of length ``scale``."""
    return torch.tensor([[scale * math.cos(math.radians(a)), scale * math.sin(math.radians(a))] for a in degrees])


def _student(x: torch.Tensor) -> torch.Tensor:
    return x.clone().requires_grad_(True)


def _teacher(x: torch.Tensor) -> torch.Tensor:
    return x.clone().requires_grad_(True)  # must get no gradient


def _grads_flow(loss: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor, nonzero: bool = True) -> None:
    loss.backward()
    assert student.grad is not None
    assert torch.isfinite(student.grad).all()
    if nonzero:
        assert student.grad.abs().sum() > 0
    assert teacher.grad is None or not teacher.grad.any()


def _scalar_f32(loss: torch.Tensor) -> None:
    assert loss.shape == () and loss.dtype == torch.float32


# ---------------------------------------------------------------------------------------------- kd_loss

def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def test_kd_loss_hand_value_and_direction():
    # T = 2: the teacher's first row, divided by T, is [ln 3, 0] -> p_t = [3/4, 1/4]; the student's is uniform.
    # The second row is the same for both (KL 0). KL(p_t || p_s), not KL(p_s || p_t), times T^2, batch mean.
    s = _student(torch.tensor([[0.0, 0.0], [1.0, 2.0]]))
    t = _teacher(torch.tensor([[2 * math.log(3.0), 0.0], [1.0, 2.0]]))
    loss = L.kd_loss(s, t, temperature=2.0)
    expected = 4.0 * (_kl([0.75, 0.25], [0.5, 0.5]) + 0.0) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert abs(expected - 4.0 * _kl([0.5, 0.5], [0.75, 0.25]) / 2) > 1e-3  # the direction is observable
    _scalar_f32(loss)
    _grads_flow(loss, s, t)


def test_kd_loss_default_temperature_is_4():
    s = torch.zeros(1, 2)
    t = torch.tensor([[4 * math.log(3.0), 0.0]])
    assert L.kd_loss(s, t).item() == pytest.approx(16.0 * _kl([0.75, 0.25], [0.5, 0.5]), rel=1e-5)


def test_kd_loss_equal_logits_is_zero():
    x = torch.tensor([[3.0, -1.0, 0.5], [0.0, 0.0, 7.0]])
    assert L.kd_loss(_student(x), x.clone()).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------- embedding_mse

def test_embedding_mse_hand_value():
    # row 0: (3, 4) -> (0.6, 0.8) against (10, 0) -> (1, 0): squares 0.16 and 0.64
    # row 1: (0, 2) and (0, 5) point the same way: 0.  Mean over all 4 elements: 0.8 / 4.
    s = _student(torch.tensor([[3.0, 4.0], [0.0, 2.0]]))
    t = _teacher(torch.tensor([[10.0, 0.0], [0.0, 5.0]]))
    loss = L.embedding_mse(s, t)
    assert loss.item() == pytest.approx(0.2, rel=1e-6)
    _scalar_f32(loss)
    _grads_flow(loss, s, t)


def test_embedding_mse_identical_or_rescaled_is_zero():
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    assert L.embedding_mse(x, x).item() == pytest.approx(0.0, abs=1e-7)
    assert L.embedding_mse(x, 7.0 * x).item() == pytest.approx(0.0, abs=1e-7)  # normalised inside


# ---------------------------------------------------------------------------------------------- angular_distill

def test_angular_distill_hand_value():
    # row 0: 60 degrees apart: (1 - 0.5)^2 = 0.25; row 1: opposite: (1 - (-1))^2 = 4. Mean 2.125.
    s = _student(torch.cat([_unit(0.0), _unit(90.0, scale=2.0)]))
    t = _teacher(torch.cat([_unit(60.0, scale=3.0), _unit(270.0)]))
    loss = L.angular_distill(s, t)
    assert loss.item() == pytest.approx(2.125, rel=1e-5)
    _scalar_f32(loss)
    _grads_flow(loss, s, t)


def test_angular_distill_identical_is_zero():
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    assert L.angular_distill(x, 0.5 * x).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------- adaptive_margins

def test_adaptive_margins_hand_values():
    centres = torch.tensor([[5.0, 0.0], [0.0, 2.0]])  # class 0 along x, class 1 along y
    # cosines to their centres: 1, 0.5 (60 deg), 0 (orthogonal), -1 (clamped to 0). a_max = 1.
    emb = torch.cat([_unit(0.0, scale=2.0), _unit(60.0), _unit(0.0), _unit(270.0)])
    labels = torch.tensor([0, 0, 1, 1])
    m = L.adaptive_margins(centres, emb, labels)
    assert m.shape == (4,) and m.dtype == torch.float32
    assert m.tolist() == pytest.approx([0.5, 0.2 + 0.3 * 0.5, 0.2, 0.2], abs=1e-6)


def test_adaptive_margins_scale_by_the_batch_max():
    centres = torch.tensor([[1.0, 0.0]])
    # cosines 0.5 and 0.25: a_max = 0.5, so m = (0.3 - 0.1) / 0.5 * a + 0.1 = [0.3, 0.2]
    emb = torch.tensor([[0.5, math.sqrt(0.75)], [0.25, math.sqrt(1 - 0.0625)]])
    m = L.adaptive_margins(centres, emb, torch.tensor([0, 0]), m_min=0.1, m_max=0.3)
    assert m.tolist() == pytest.approx([0.3, 0.2], abs=1e-6)


def test_adaptive_margins_no_positive_cosine_gives_m_min():
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    emb = torch.tensor([[-1.0, 0.0], [0.0, 3.0], [0.5, -0.5]])  # cosines -1, exactly 0, negative
    m = L.adaptive_margins(centres, emb, torch.tensor([0, 0, 1]), m_min=0.25, m_max=0.4)
    assert m.tolist() == pytest.approx([0.25, 0.25, 0.25], abs=1e-7)


def test_adaptive_margins_bounds_and_no_grad():
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(10, 16, generator=g).requires_grad_(True)
    emb = torch.randn(64, 16, generator=g).requires_grad_(True)
    labels = torch.randint(0, 10, (64,), generator=g)
    m = L.adaptive_margins(centres, emb, labels)
    assert not m.requires_grad
    assert (m >= 0.2).all() and (m <= 0.5).all()
    assert m.max().item() == pytest.approx(0.5, abs=1e-6)  # the batch's most central sample gets m_max


def test_adaptive_margins_bad_labels():
    with pytest.raises(L.LossInputError, match=r"labels must lie in \[0, 2\)"):
        L.adaptive_margins(torch.eye(2), torch.eye(2), torch.tensor([0, 2]))


# ---------------------------------------------------------------------------------------------- margin_distill

def test_margin_distill_hand_value():
    # scale 64 / T 4 = 16: teacher cosines [ln 3 / 16, 0] -> p_t = [3/4, 1/4]; equal student cosines -> uniform.
    s = _student(torch.tensor([[0.3, 0.3]]))
    t = _teacher(torch.tensor([[math.log(3.0) / 16, 0.0]]))
    loss = L.margin_distill(s, t)
    assert loss.item() == pytest.approx(16.0 * _kl([0.75, 0.25], [0.5, 0.5]), rel=1e-5)
    _scalar_f32(loss)
    _grads_flow(loss, s, t)


def test_margin_distill_scale_and_temperature():
    # scale 8 / T 2 = 4: teacher cosines [ln 3 / 4, 0]; times T^2 = 4.
    t = torch.tensor([[math.log(3.0) / 4, 0.0]])
    loss = L.margin_distill(torch.zeros(1, 2), t, temperature=2.0, scale=8.0)
    assert loss.item() == pytest.approx(4.0 * _kl([0.75, 0.25], [0.5, 0.5]), rel=1e-5)


def test_margin_distill_equal_inputs_is_zero():
    x = torch.tensor([[0.9, 0.1, -0.3], [0.2, 0.2, 0.4]])
    assert L.margin_distill(x, x.clone()).item() == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------------------------------------- triplet_distill

# Student angles [0, 30, 90, 65, 200], teacher angles [0, 40, 20, 70, 180], labels [0, 0, 0, 1, 1].
# Mined on the student's distances (by hand, from the angle gaps):
#   anchor 0: positives 1 (30), 2 (90) -> p=2; negatives 3 (65), 4 (160) -> n=3
#   anchor 1: positives 0 (30), 2 (60) -> p=2; negatives 3 (35), 4 (170) -> n=3
#   anchor 2: positives 0 (90), 1 (60) -> p=0; negatives 3 (25), 4 (110) -> n=3
#   anchor 3: positive 4 (135);                negatives 0 (65), 1 (35), 2 (25) -> n=2
#   anchor 4: positive 3 (135);                negatives 0 (160), 1 (170), 2 (110) -> n=2
# (the teacher would pick anchor 0's positive 1, at 40 degrees: mining by the student is observable)
# Angle gaps (student a-p, student a-n, teacher a-n, teacher a-p) of those triplets:
TRIPLETS = [(90, 65, 70, 20), (60, 35, 30, 20), (90, 25, 50, 20), (135, 25, 50, 110), (135, 110, 160, 110)]
DIST = {"l2": lambda deg: 2 * math.sin(math.radians(deg) / 2),  # chord of two unit vectors
        "cos": lambda deg: 1 - math.cos(math.radians(deg))}


def _triplet_expected(distance: str, m_min: float = 0.2, m_max: float = 0.5) -> float:
    d = DIST[distance]
    total = 0.0
    for s_ap, s_an, t_an, t_ap in TRIPLETS:
        m = min(max(d(t_an) - d(t_ap), m_min), m_max)
        total += max(d(s_ap) - d(s_an) + m, 0.0)
    return total / len(TRIPLETS)


@pytest.mark.parametrize("distance", ["l2", "cos"])
def test_triplet_distill_hand_value(distance):
    s = _student(_unit(0, 30, 90, 65, 200, scale=3.0))
    t = _teacher(_unit(0, 40, 20, 70, 180, scale=0.5))
    labels = torch.tensor([0, 0, 0, 1, 1])
    loss = L.triplet_distill(s, t, labels, distance=distance)
    assert loss.item() == pytest.approx(_triplet_expected(distance), rel=1e-5)
    _scalar_f32(loss)
    _grads_flow(loss, s, t)


def test_triplet_distill_margin_bounds_are_used():
    s, t = _unit(0, 30, 90, 65, 200), _unit(0, 40, 20, 70, 180)
    labels = torch.tensor([0, 0, 0, 1, 1])
    loss = L.triplet_distill(s, t, labels, m_min=0.05, m_max=0.3)
    assert loss.item() == pytest.approx(_triplet_expected("l2", 0.05, 0.3), rel=1e-5)
    assert abs(_triplet_expected("l2", 0.05, 0.3) - _triplet_expected("l2")) > 1e-3


def test_triplet_distill_separated_student_is_zero_with_grad():
    # each class in a 10-degree arc, the classes opposite: d_ap - d_an + 0.5 < 0 for every anchor
    s = _student(_unit(0, 10, 180, 190))
    t = _teacher(_unit(0, 10, 180, 190))
    loss = L.triplet_distill(s, t, torch.tensor([0, 0, 1, 1]))
    assert loss.item() == 0.0
    _grads_flow(loss, s, t, nonzero=False)


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [5, 5, 5, 5]], ids=["no-positive", "no-negative"])
def test_triplet_distill_no_anchor_is_zero_and_backward_works(labels):
    s = _student(_unit(0, 10, 180, 190))
    t = _teacher(_unit(0, 10, 180, 190))
    loss = L.triplet_distill(s, t, torch.tensor(labels))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    _scalar_f32(loss)
    _grads_flow(loss, s, t, nonzero=False)
    assert not s.grad.any()


def test_triplet_distill_identical_positives_have_finite_gradients():
    # a positive at distance 0 from its anchor: the l2 distance's gradient must not be NaN
    s = _student(_unit(0, 0, 20))
    loss = L.triplet_distill(s, _unit(0, 0, 20), torch.tensor([0, 0, 1]))
    loss.backward()
    assert torch.isfinite(s.grad).all()


def test_triplet_distill_unknown_distance():
    with pytest.raises(ValueError, match="distance must be one of l2, cos; got 'cosine'"):
        L.triplet_distill(torch.eye(2), torch.eye(2), torch.tensor([0, 1]), distance="cosine")


# ---------------------------------------------------------------------------------------------- ekd_loss

# Labels [0, 0, 1, 1]: positive pairs (0,1), (2,3); negatives (0,2), (0,3), (1,2), (1,3).
# Student angles [0, 80, 170, 30], teacher angles [0, 20, 90, 100]; a pair's similarity is the cosine of its gap.
EKD_S = _unit(0, 80, 170, 30)
EKD_T = _unit(0, 20, 90, 100)
EKD_Y = torch.tensor([0, 0, 1, 1])
SIM_S = {(0, 1): math.cos(math.radians(80)), (2, 3): math.cos(math.radians(140)),
         (0, 2): math.cos(math.radians(170)), (0, 3): math.cos(math.radians(30)),
         (1, 2): math.cos(math.radians(90)), (1, 3): math.cos(math.radians(50))}
SIM_T = {(0, 1): math.cos(math.radians(20)), (2, 3): math.cos(math.radians(10)),
         (0, 2): math.cos(math.radians(90)), (0, 3): math.cos(math.radians(100)),
         (1, 2): math.cos(math.radians(70)), (1, 3): math.cos(math.radians(80))}


def _ekd_expected(ranked: list[tuple[tuple[int, int], float]], rank_weight: float = 1.0) -> float:
    """sum w (S_s - S_t)^2 / sum w over the critical pairs, each given with its rank r by hand."""
    w = [1 + rank_weight * r for _, r in ranked]
    sq = [(SIM_S[p] - SIM_T[p]) ** 2 for p, _ in ranked]
    return sum(wi * si for wi, si in zip(w, sq, strict=True)) / sum(w)


# fpr 0.25 (quantile 0.75 of 4 negatives: position 2.25 of the sorted values):
#   student negatives sorted [cos170, cos90, cos50, cos30] -> tau_s = cos50 + 0.25 (cos30 - cos50) ~ 0.699
#   teacher negatives sorted [cos100, cos90, cos80, cos70] -> tau_t = cos80 + 0.25 (cos70 - cos80) ~ 0.216
#   critical positives (S_s < tau_s, S_t >= tau_t): (0,1) 0.174 / 0.940 and (2,3) -0.766 / 0.985
#   critical negatives (S_s >= tau_s, S_t < tau_t): (0,3) 0.866 / -0.174; (1,3) has S_s 0.643 < tau_s
#   gaps |S_s - S_t|: (0,1) 0.766 < (0,3) 1.040 < (2,3) 1.751 -> ranks 0, 0.5, 1
EKD_025 = [((0, 1), 0.0), ((0, 3), 0.5), ((2, 3), 1.0)]
# fpr 0.6 (quantile 0.4: position 1.2): tau_s = 0 + 0.2 cos50 ~ 0.129, tau_t = 0 + 0.2 cos80 ~ 0.035
#   (0,1) is no longer critical (S_s 0.174 >= tau_s); (2,3) and (0,3) are; (1,3) has S_t 0.174 >= tau_t
EKD_06 = [((0, 3), 0.0), ((2, 3), 1.0)]


def test_ekd_loss_hand_value():
    s, t = _student(EKD_S), _teacher(EKD_T)
    loss = L.ekd_loss(s, t, EKD_Y, fprs=(0.25,))
    assert loss.item() == pytest.approx(_ekd_expected(EKD_025), rel=1e-5)
    _scalar_f32(loss)
    _grads_flow(loss, s, t)


def test_ekd_loss_threshold_follows_fpr():
    loss = L.ekd_loss(EKD_S, EKD_T, EKD_Y, fprs=(0.6,))
    assert loss.item() == pytest.approx(_ekd_expected(EKD_06), rel=1e-5)
    assert abs(_ekd_expected(EKD_06) - _ekd_expected(EKD_025)) > 1e-3


def test_ekd_loss_union_over_fprs_counts_a_pair_once():
    # (0,3) and (2,3) are critical at both fprs: the union is EKD_025's three pairs, each once
    loss = L.ekd_loss(EKD_S, EKD_T, EKD_Y, fprs=(0.6, 0.25))
    assert loss.item() == pytest.approx(_ekd_expected(EKD_025), rel=1e-5)


def test_ekd_loss_default_fprs_and_rank_weight():
    # fpr 0.1 and 0.01 (positions 2.7 and 2.97) pick the same three pairs as 0.25 here
    assert L.ekd_loss(EKD_S, EKD_T, EKD_Y).item() == pytest.approx(_ekd_expected(EKD_025), rel=1e-5)
    # rank_weight 0: the plain mean of the squared disagreements
    plain = L.ekd_loss(EKD_S, EKD_T, EKD_Y, fprs=(0.25,), rank_weight=0.0)
    assert plain.item() == pytest.approx(_ekd_expected(EKD_025, rank_weight=0.0), rel=1e-5)
    # rank_weight 3: weights 1, 2.5, 4
    heavy = L.ekd_loss(EKD_S, EKD_T, EKD_Y, fprs=(0.25,), rank_weight=3.0)
    assert heavy.item() == pytest.approx(_ekd_expected(EKD_025, rank_weight=3.0), rel=1e-5)


def test_ekd_loss_two_critical_pairs():
    # student [0, 120, 90, 100] against the teacher [0, 20, 90, 100], fpr 0.25:
    #   student negatives (0,2) cos90, (0,3) cos100, (1,2) cos30, (1,3) cos20 -> tau_s = cos30 + .25 (cos20 - cos30)
    #   positives: (0,1) cos120 < tau_s, teacher cos20 >= tau_t -> critical; (2,3) cos10 >= tau_s -> not
    #   negatives >= tau_s: only (1,3) (cos20); teacher cos80 < tau_t (~0.216) -> critical
    #   gaps: (0,1) |cos120 - cos20| = 1.440 > (1,3) |cos20 - cos80| = 0.766 -> ranks 1 and 0, weights 2 and 1
    loss = L.ekd_loss(_unit(0, 120, 90, 100), EKD_T, EKD_Y, fprs=(0.25,))
    d01 = math.cos(math.radians(120)) - math.cos(math.radians(20))
    d13 = math.cos(math.radians(20)) - math.cos(math.radians(80))
    assert loss.item() == pytest.approx((2 * d01 ** 2 + 1 * d13 ** 2) / 3, rel=1e-5)


def test_ekd_loss_single_critical_pair():
    # student [0, 120, 100, 90]: its top negative is now (1,2) (cos20), which the teacher accepts too
    # (cos70 >= tau_t), and (2,3) (cos10) is above tau_s: only the positive (0,1) is critical
    s = _student(_unit(0, 120, 100, 90))
    t = _teacher(EKD_T)
    loss = L.ekd_loss(s, t, EKD_Y, fprs=(0.25,))
    assert loss.item() == pytest.approx((math.cos(math.radians(120)) - math.cos(math.radians(20))) ** 2, rel=1e-5)
    _grads_flow(loss, s, t)
    # only samples 0 and 1 take part: the others get no gradient
    assert s.grad[:2].abs().sum() > 0 and not s.grad[2:].any()


def test_ekd_loss_similarity_at_the_threshold_is_accepted():
    # student [0, 60, 100, 100]: samples 2 and 3 are the same vector, so (1,2) and (1,3) have the same
    # similarity cos40, the two largest student negatives, and tau_s (between them) is exactly cos40:
    # both are accepted (S_s >= tau_s). The teacher rejects (1,3) (cos80 < tau_t ~ 0.216) -> critical;
    # it accepts (1,2) (cos70). Positive (0,1): cos60 < tau_s, teacher cos20 -> critical; (2,3): 1 >= tau_s.
    # gaps: (0,1) |cos60 - cos20| = 0.440 < (1,3) |cos40 - cos80| = 0.592 -> weights 1 and 2
    loss = L.ekd_loss(_unit(0, 60, 100, 100), EKD_T, EKD_Y, fprs=(0.25,))
    d01 = math.cos(math.radians(60)) - math.cos(math.radians(20))
    d13 = math.cos(math.radians(40)) - math.cos(math.radians(80))
    assert loss.item() == pytest.approx((d01 ** 2 + 2 * d13 ** 2) / 3, rel=1e-5)


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [1, 1, 1, 1]], ids=["all-negative", "no-negative"])
def test_ekd_loss_no_critical_pair_is_zero_with_grad(labels):
    s, t = _student(EKD_T), _teacher(EKD_T)  # student == teacher: nothing is critical
    loss = L.ekd_loss(s, t, torch.tensor(labels))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    _scalar_f32(loss)
    _grads_flow(loss, s, t, nonzero=False)


def test_ekd_loss_identical_student_is_zero():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 8, generator=g)
    labels = torch.randint(0, 4, (16,), generator=g)
    assert L.ekd_loss(x, 2.0 * x, labels).item() == 0.0


def test_ekd_quantile_beyond_torch_limit_matches_torch():
    x = torch.randn(1001, generator=torch.Generator().manual_seed(4))
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert L._quantile_sorted(x, q).item() == pytest.approx(torch.quantile(x, q).item(), abs=1e-6)


def test_ekd_loss_bad_fprs():
    with pytest.raises(ValueError, match=r"fprs must be one or more false-positive rates in \(0, 1\)"):
        L.ekd_loss(EKD_S, EKD_T, EKD_Y, fprs=(0.1, 1.5))


# ---------------------------------------------------------------------------------------------- all of them

PAIRWISE = [("kd_loss", {}), ("embedding_mse", {}), ("angular_distill", {}), ("margin_distill", {}),
            ("triplet_distill", {"labels": torch.tensor([0, 0, 1, 1, 2, 2])}),
            ("ekd_loss", {"labels": torch.tensor([0, 0, 1, 1, 2, 2])})]


@pytest.mark.parametrize("name,kw", PAIRWISE, ids=[p[0] for p in PAIRWISE])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_scalar_float32_and_gradients(name, kw, dtype):
    g = torch.Generator().manual_seed(5)
    s = torch.randn(6, 12, generator=g).to(dtype).requires_grad_(True)
    t = torch.randn(6, 12, generator=g).to(dtype).requires_grad_(True)
    loss = getattr(L, name)(s, t, **kw)
    _scalar_f32(loss)
    loss.backward()
    assert s.grad is not None and s.grad.dtype == dtype and torch.isfinite(s.grad.float()).all()
    assert t.grad is None


@pytest.mark.parametrize("name,kw", PAIRWISE, ids=[p[0] for p in PAIRWISE])
def test_shape_mismatch_is_one_line(name, kw):
    with pytest.raises(L.LossInputError) as e:
        getattr(L, name)(torch.zeros(6, 12), torch.zeros(6, 16), **kw)
    assert isinstance(e.value, ValueError) and isinstance(e.value, FcbenchError)
    assert "\n" not in str(e.value) and name in str(e.value) and "differ in shape" in str(e.value)


def test_labels_must_match_the_batch():
    with pytest.raises(L.LossInputError, match=r"labels must have shape \(4,\)"):
        L.triplet_distill(torch.zeros(4, 2), torch.zeros(4, 2), torch.tensor([0, 1]))
    with pytest.raises(L.LossInputError, match="labels must be integers"):
        L.ekd_loss(torch.zeros(4, 2), torch.zeros(4, 2), torch.tensor([0.0, 1.0, 0.0, 1.0]))
