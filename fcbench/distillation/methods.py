"""The distillation methods, each a technique plugin (``verb = "distill"``) of the ``fcbench.techniques`` group.

A method is a loss on what the frozen teacher and the student compute for one training batch; the
training loop is ``train``'s, through its loss hook (:class:`fcbench.distillation.Distiller` runs the
methods of one ``--method a+b``). A method says what it needs (both models face embedders or both
classifiers, the teacher's training head, a student margin head) and may change the student's head
before training (``adaptive-margin`` copies and freezes the teacher's class centres) or give
per-sample margins. The loss formulas are in :mod:`fcbench.distillation.losses`.

Applied to a checkpoint on its own (``fcbench compress --technique kd``) a method has no teacher
and no data: it refuses, naming ``fcbench distill``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from fcbench.errors import FcbenchError
from fcbench.techniques.base import Technique

if TYPE_CHECKING:
    from fcbench.distillation import Distiller, Plan
    from fcbench.training.loop import LossInputs


def _non_negative(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def _positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


class DistillMethod(Technique):
    """Base of the methods. ``task``: what teacher and student must both be (``embedding`` or
    ``classification``); ``embeddings``: compares embeddings (a projection is added when the sizes
    differ); ``teacher_head``/``student_head``: needs the teacher's training head / a student margin head."""

    verb: ClassVar[str] = "distill"
    task: ClassVar[str] = "embedding"
    embeddings: ClassVar[bool] = False
    teacher_head: ClassVar[bool] = False
    student_head: ClassVar[bool] = False
    paper: ClassVar[str] = ""

    def check(self, options: Any, plan: Plan) -> None:
        """Refuse (FcbenchError) what cannot work, before anything is trained or written."""

    def setup(self, d: Distiller, options: Any, model: torch.nn.Module, head: torch.nn.Module | None,
              dataset: Any) -> None:
        """Change the student's head before training (default: nothing)."""

    def margin(self, d: Distiller, options: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        return None

    def ce_weight(self, options: Any) -> float:
        return 1.0

    def terms(self, d: Distiller, options: Any, inputs: LossInputs) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def apply(self, checkpoint: Any, options: Any, context: Any) -> Any:
        raise FcbenchError(f"technique '{self.name}' is a distillation method: it needs a teacher and training data; "
                           f"run fcbench distill --teacher T --student {checkpoint.path} --method {self.name}")


# --- classification ---------------------------------------------------------------------------------

class KD(DistillMethod):
    """Hinton et al. 2015: (1 - alpha) * CE + alpha * T^2 * KL(teacher || student) on softened logits."""

    task = "classification"
    paper = "Hinton, Vinyals, Dean: Distilling the knowledge in a neural network (2015)"

    @dataclass
    class Options:
        temperature: float = 4.0
        alpha: float = 0.9  # weight of the distillation term; the cross-entropy gets 1 - alpha

        def __post_init__(self) -> None:
            _positive("temperature", self.temperature)
            if not 0 <= self.alpha <= 1:
                raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    def ce_weight(self, options: Any) -> float:
        return 1.0 - options.alpha

    def terms(self, d, options, inputs):
        from fcbench.distillation.losses import kd_loss

        return {"kd": options.alpha * kd_loss(inputs.outputs, d.teacher_out(inputs.x), temperature=options.temperature)}


# --- face embeddings ----------------------------------------------------------------------------------

@dataclass
class WeightOptions:
    weight: float = 1.0

    def __post_init__(self) -> None:
        _non_negative("weight", self.weight)


class _EmbeddingLoss(DistillMethod):
    """``weight`` times a loss between the student's (projected) and the teacher's embedding of each image."""

    embeddings = True
    loss: ClassVar[str] = ""  # its function in fcbench.distillation.losses

    def terms(self, d, options, inputs):
        from fcbench.distillation import losses

        fn = getattr(losses, self.loss)
        return {self.name: options.weight * fn(d.student_emb(inputs), d.teacher_out(inputs.x))}


class EmbeddingMSE(_EmbeddingLoss):
    """The Serbian thesis: L_ArcFace(student) + lambda * MSE(norm(e_s), norm(e_t)), lambda = 100."""

    loss = "embedding_mse"
    paper = "master thesis 'Face recognition on mobile' (2022): IResNet-34 -> IResNet-18, lambda = 100"

    @dataclass
    class Options(WeightOptions):
        weight: float = 100.0


class Angular(_EmbeddingLoss):
    """Duong et al. 2019 (ShrinkTeaNet): mean (1 - cos(e_s, e_t))^2."""

    loss = "angular_distill"
    paper = "Duong et al.: ShrinkTeaNet, million-scale lightweight face recognition via shrinking teacher-student " \
            "networks (2019), angular distillation loss"

    @dataclass
    class Options(WeightOptions):
        weight: float = 10.0


class Triplet(DistillMethod):
    """Feng et al. 2019: batch-hard triplets on the student's distances, margins from the teacher's."""

    embeddings = True
    distance: ClassVar[str] = "l2"
    paper = "Feng et al.: Triplet distillation for deep face recognition (2019)"

    @dataclass
    class Options(WeightOptions):
        m_min: float = 0.2
        m_max: float = 0.5

        def __post_init__(self) -> None:
            super().__post_init__()
            _non_negative("m_min", self.m_min)
            if self.m_max < self.m_min:
                raise ValueError(f"m_max must be >= m_min ({self.m_min}), got {self.m_max}")

    def terms(self, d, options, inputs):
        from fcbench.distillation.losses import triplet_distill

        loss = triplet_distill(d.student_emb(inputs), d.teacher_out(inputs.x), inputs.y, distance=self.distance,
                               m_min=options.m_min, m_max=options.m_max)
        return {self.name: options.weight * loss}


class TripletL2(Triplet):
    distance = "l2"


class TripletCos(Triplet):
    distance = "cos"


class Margin(DistillMethod):
    """Margin-softmax distillation: KL between the teacher's and the student's scaled cosines to their
    own class centres, softened by T (4 in the Russian dissertation's comparison)."""

    teacher_head = True
    student_head = True
    paper = "the 'margin distillation, T = 4' baseline of the PhD dissertation (2023): Hinton's KD on the " \
            "margin heads' s*cos logits"

    @dataclass
    class Options(WeightOptions):
        temperature: float = 4.0

        def __post_init__(self) -> None:
            super().__post_init__()
            _positive("temperature", self.temperature)

    def terms(self, d, options, inputs):
        from fcbench.distillation.losses import margin_distill

        s_cos = inputs.head.cosine(inputs.outputs)
        t_cos = d.teacher_cos(inputs.x)
        return {self.name: options.weight * margin_distill(s_cos, t_cos, temperature=options.temperature,
                                                           scale=float(getattr(inputs.head, "s", 64.0)))}


class AdaptiveMargin(DistillMethod):
    """The PhD dissertation's method: the teacher's ArcFace class centres copied into the student's head
    and frozen; per-sample margins m_i = (m_max - m_min) / a_max * a_i + m_min, a_i = cos(W_T[y_i], x_T_i).
    It changes the ArcFace loss itself and adds no term of its own."""

    teacher_head = True
    student_head = True
    paper = "PhD dissertation 'CNN performance in a face recognition system' (2023), chapter 3 " \
            "(also Svitov, Alyamkin: MarginDistillation, 2020)"

    @dataclass
    class Options:
        m_min: float = 0.2
        m_max: float = 0.5
        copy_centres: bool = True
        fixed_margin: bool = False  # the head's own m for every sample
        train_centres: bool = False  # the copied centres are trained (not frozen)

        def __post_init__(self) -> None:
            _non_negative("m_min", self.m_min)
            if self.m_max < self.m_min:
                raise ValueError(f"m_max must be >= m_min ({self.m_min}), got {self.m_max}")

    def check(self, options, plan):
        if not options.copy_centres and options.fixed_margin:
            raise FcbenchError("distill: adaptive-margin with --no-copy-centres and --fixed-margin uses nothing of "
                               "the teacher (it is plain training); drop one of them")
        if options.copy_centres and plan.teacher_dim != plan.student_dim:
            raise FcbenchError(
                f"distill: adaptive-margin copies the teacher's class centres ({plan.teacher_dim}-d) into the "
                f"student's head, which needs a {plan.teacher_dim}-d student embedding (got {plan.student_dim}); "
                f"pass -o embedding_size={plan.teacher_dim} for the student, or --no-copy-centres")
        if options.train_centres and not options.copy_centres:
            raise FcbenchError("distill: adaptive-margin --train-centres trains the copied centres; it needs them "
                               "copied (drop --no-copy-centres)")

    def setup(self, d, options, model, head, dataset):
        if not options.copy_centres:
            return
        with torch.no_grad():
            head.weight.copy_(d.teacher_head.weight.to(head.weight.device, head.weight.dtype))
        head.weight.requires_grad_(bool(options.train_centres))

    def margin(self, d, options, x, y):
        if options.fixed_margin:
            return None
        from fcbench.distillation.losses import adaptive_margins

        return adaptive_margins(d.teacher_head.weight.float(), d.teacher_out(x), y,
                                m_min=options.m_min, m_max=options.m_max)

    def terms(self, d, options, inputs):
        return {}


class EKD(DistillMethod):
    """Evaluation-oriented KD (Huang et al., CVPR 2022): match the teacher's pair similarities on the
    pairs whose accept/reject decision at the batch's FPR thresholds differs between the two models."""

    embeddings = True
    paper = "Huang, Wang, Zhang, Ding, Zhang: Evaluation-oriented knowledge distillation for deep face " \
            "recognition (CVPR 2022)"

    @dataclass
    class Options(WeightOptions):
        weight: float = 10.0
        fprs: list[float] = field(default_factory=lambda: [0.1, 0.01])
        rank_weight: float = 1.0

        def __post_init__(self) -> None:
            super().__post_init__()
            if not self.fprs:
                raise ValueError("fprs must name at least one false-positive rate, e.g. fprs=[0.1,0.01]")
            for f in self.fprs:
                if not 0 < f < 1:
                    raise ValueError(f"fprs must be in (0, 1), got {f}")
            _non_negative("rank_weight", self.rank_weight)

    def terms(self, d, options, inputs):
        from fcbench.distillation.losses import ekd_loss

        loss = ekd_loss(d.student_emb(inputs), d.teacher_out(inputs.x), inputs.y, fprs=tuple(options.fprs),
                        rank_weight=options.rank_weight)
        return {self.name: options.weight * loss}
