"""The eval verb: quality of a checkpoint on a dataset, stored as rows as they are computed.

Protocols: ``verification`` (pair sets: insightface 10-fold accuracy, EER, TAR@FAR, ROC AUC),
``classification`` (top-1/top-5) and ``identification`` (closed-set rank-1/rank-5 with the
first image of each class as gallery). ``auto`` picks from the data and the model's task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from fcbench.artifact import Manifest
from fcbench.errors import FcbenchError
from fcbench.results.context import RunContext
from fcbench.results.store import DEFAULT_STORE, Store

PROTOCOLS = ("auto", "verification", "classification", "identification")


@dataclass
class EvalConfig:
    checkpoint: str = ""
    model: str | None = None  # only for plain state_dict files (e.g. insightface backbone.pth)
    model_options: dict[str, Any] = field(default_factory=dict)
    data: Any = "synthetic:pairs"
    data_options: dict[str, Any] = field(default_factory=dict)
    protocol: str = "auto"
    batch_size: int = 64
    nfolds: int = 10
    workers: int = 0
    threads: int | None = None
    store: str | None = None


@dataclass
class EvalReport:
    checkpoint: str
    model: str
    dataset: str
    protocol: str
    metrics: list[tuple[str, float]]
    lineage: str = ""
    details: Any = None  # the metrics result object (ROC arrays etc.)


def load_for_eval(cfg: EvalConfig) -> tuple[torch.nn.Module, Manifest | None]:
    from fcbench.train.checkpoint import load_checkpoint

    path = Path(cfg.checkpoint)
    if cfg.model:
        from fcbench.models import create

        if not path.exists():
            raise FcbenchError(f"weights file {path} does not exist")
        model = create(cfg.model, weights=str(path), **cfg.model_options)
        model.eval()
        return model, None
    ckpt = load_checkpoint(path)
    return ckpt.build_model(), ckpt.manifest


@torch.no_grad()
def _forward_all(model: torch.nn.Module, dataset, batch_size: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    outs, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers):
        if isinstance(batch, (list, tuple)):
            x, y = batch
            labels.append(np.asarray(y))
        else:
            x = batch
        outs.append(model(x).float().numpy())
    return np.concatenate(outs), (np.concatenate(labels) if labels else np.empty(0))


def evaluate(cfg: EvalConfig, ctx: RunContext | None = None) -> EvalReport:
    from fcbench.data import gallery_probe_split, open_dataset
    from fcbench.metrics.classification import classification_metrics
    from fcbench.metrics.identification import identification_metrics
    from fcbench.metrics.verification import verification_metrics

    if cfg.protocol not in PROTOCOLS:
        raise FcbenchError(f"eval: protocol must be one of {', '.join(PROTOCOLS)}, got '{cfg.protocol}'")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = ctx or RunContext()
    model, manifest = load_for_eval(cfg)
    dataset = open_dataset(cfg.data, preprocessing=model.preprocessing, **cfg.data_options)
    is_pairs = hasattr(dataset, "issame")
    protocol = cfg.protocol
    if protocol == "auto":
        protocol = "verification" if is_pairs else (
            "classification" if model.fcbench_task == "classification" else "identification")
    if protocol == "verification" and not is_pairs:
        raise FcbenchError(
            f"eval: verification needs a pair set (e.g. an insightface .bin); '{dataset.source}' has none")
    if protocol != "verification" and is_pairs:
        raise FcbenchError(f"eval: {protocol} needs labelled images; '{dataset.source}' is a verification pair set")
    if protocol == "classification" and model.fcbench_task != "classification":
        raise FcbenchError(f"eval: model '{model.fcbench_name}' outputs embeddings; use --protocol identification")

    report = EvalReport(checkpoint=str(cfg.checkpoint), model=model.fcbench_name, dataset=str(dataset.source),
                        protocol=protocol, metrics=[],
                        lineage=manifest.lineage_summary() if manifest else "")
    if protocol == "verification":
        emb, _ = _forward_all(model, dataset, cfg.batch_size, cfg.workers)
        result = verification_metrics(emb[0::2], emb[1::2], np.asarray(dataset.issame), nfolds=cfg.nfolds)
    elif protocol == "classification":
        logits, labels = _forward_all(model, dataset, cfg.batch_size, cfg.workers)
        result = classification_metrics(logits, labels)
    else:
        gallery_idx, probe_idx = gallery_probe_split(dataset)
        g, gl = _forward_all(model, Subset(dataset, gallery_idx), cfg.batch_size, cfg.workers)
        p, pl = _forward_all(model, Subset(dataset, probe_idx), cfg.batch_size, cfg.workers)
        result = identification_metrics(g, gl, p, pl)
    report.details = result
    h, w = model.preprocessing.size
    with Store(cfg.store or DEFAULT_STORE) as store:
        for name, value in result.to_rows():
            report.metrics.append((name, float(value)))
            store.add(ctx.row(
                "quality", model=model.fcbench_name, lineage=report.lineage, artifact=str(cfg.checkpoint),
                artifact_sha256=manifest.sha256 if manifest else "", format="pytorch", backend="pytorch",
                variant="eager", threads=torch.get_num_threads(), batch=cfg.batch_size,
                input_shape=f"1x3x{h}x{w}", metric=name, value=float(value), dataset=report.dataset,
                protocol=protocol,
            ))
    return report
