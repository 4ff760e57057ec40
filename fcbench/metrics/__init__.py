"""Quality metrics: numpy arrays in, plain dataclasses out (each with ``to_rows()`` for the results store)."""

from fcbench.metrics.classification import ClassificationResult, classification_metrics
from fcbench.metrics.identification import (
    IdentificationResult,
    OpenSetResult,
    identification_metrics,
    open_set_tar_at_far,
)
from fcbench.metrics.verification import (
    VerificationResult,
    fnmr_at_fmr,
    fuse_flip,
    tar_at_far,
    threshold_at_far,
    verification_metrics,
)

__all__ = [
    "ClassificationResult",
    "IdentificationResult",
    "OpenSetResult",
    "VerificationResult",
    "classification_metrics",
    "fnmr_at_fmr",
    "fuse_flip",
    "identification_metrics",
    "open_set_tar_at_far",
    "tar_at_far",
    "threshold_at_far",
    "verification_metrics",
]
