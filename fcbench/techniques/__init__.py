"""Compression techniques (distill, prune, quantize, ...) as plugins, and applying one.

The contract a technique keeps is in :mod:`fcbench.techniques.base`. :func:`apply_technique`
is the library side of applying one: load a checkpoint, parse the options, let the technique
change the model, and save the result atomically with its manifest, whose lineage is the
input's plus one step naming the technique, its options, the input's sha256 and (as
``options["parent_file"]``) where the input lies, so ``eval`` finds the float parent
(:func:`fcbench.lineage.float_parent`). It never prints and never writes the results store:
:meth:`TechniqueResult.to_rows` gives rows for a caller that stores them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcbench.errors import FcbenchError, first_line
from fcbench.techniques.base import (
    NoOptions,
    Technique,
    TechniqueContext,
    option_fields,
    options_dict,
    parse_options,
)

if TYPE_CHECKING:
    from fcbench.artifact import Manifest
    from fcbench.results.context import RunContext
    from fcbench.results.store import Row

__all__ = [
    "NoOptions",
    "Technique",
    "TechniqueContext",
    "TechniqueResult",
    "apply_technique",
    "get_technique",
    "names",
    "option_fields",
    "parse_options",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth")


def names(verb: str | None = None) -> list[str]:
    """Names of all installed techniques; with ``verb``, only those whose lineage verb it is (``distill``,
    ``prune``), leaving out plugins that do not load or keep the contract."""
    from fcbench import plugins

    every = plugins.names("technique")
    if verb is None:
        return every
    out = []
    for name in every:
        try:
            if get_technique(name).verb == verb:
                out.append(name)
        except FcbenchError:
            continue
    return out


def get_technique(name: str) -> Any:
    """The technique plugin ``name``, instantiated and checked against the contract."""
    from fcbench import plugins

    obj = plugins.load("technique", name)
    technique = obj() if isinstance(obj, type) else obj
    missing = [a for a in ("verb", "apply") if not hasattr(technique, a)]
    if missing:
        raise FcbenchError(f"technique plugin '{name}' ({type(technique).__name__}) lacks {', '.join(missing)}; "
                           "see fcbench.techniques.base.Technique")
    if not getattr(technique, "name", ""):
        technique.name = name
    option_fields(technique)  # Options must be a dataclass
    return technique


@dataclass
class TechniqueResult:
    """What applying a technique made. ``options`` are the parsed options (defaults filled in)."""

    input: Path
    output: Path
    technique: str
    verb: str
    options: dict[str, Any]
    parent_sha256: str  # the input checkpoint's sha256, as the lineage step records it
    sha256: str  # the output's
    model: str
    lineage: str  # the output's lineage summary, e.g. "train(arcface) > prune(l1)"
    params_before: int
    params_after: int
    seconds: float
    manifest: Manifest | None = field(default=None, repr=False)
    ctx: RunContext | None = field(default=None, repr=False)  # the run whose id its row carries

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("manifest")
        d.pop("ctx")
        d["input"], d["output"] = str(self.input), str(self.output)
        return d

    def to_rows(self, ctx: RunContext | None = None) -> list[Row]:
        ctx = ctx or self.ctx
        """One ``compress`` row: the output's parameter count, with the count before, the technique's
        options and the time it took in ``extra``."""
        from fcbench.results.store import Row

        values = dict(model=self.model, lineage=self.lineage, artifact=str(self.output),
                      artifact_sha256=self.sha256, format="fcbench-ckpt", metric="params",
                      value=float(self.params_after),
                      extra={"technique": self.technique, "verb": self.verb, "options": self.options,
                             "params_before": self.params_before, "parent_sha256": self.parent_sha256,
                             "input": str(self.input), "seconds": self.seconds})
        return [ctx.row("compress", **values) if ctx is not None else Row(kind="compress", **values)]


def _params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def default_output(checkpoint: str | Path, technique: str) -> Path:
    """``model.pt`` -> ``model-<technique>.pt`` beside it."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}-{technique}.pt")


def apply_technique(
    checkpoint: str | Path,
    technique: str,
    options: dict[str, Any] | None = None,
    out: str | Path | None = None,
    *,
    context: TechniqueContext | None = None,
) -> TechniqueResult:
    """Apply technique ``technique`` with ``options`` to the fcbench checkpoint ``checkpoint`` and
    write the result to ``out`` (default ``<stem>-<technique>.pt`` beside the input) with its manifest.

    Unknown technique names, unknown or mistyped option keys and an ``out`` that would overwrite
    the input raise one :class:`FcbenchError` (exit code 2) before anything runs; a technique
    that fails raises one with exit code 1 and writes nothing."""
    import torch

    from fcbench.artifact import Step, sha256_file
    from fcbench.lineage import relative_path
    from fcbench.models import profile
    from fcbench.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

    tech = get_technique(technique)
    ok, reason = tech.available() if callable(getattr(tech, "available", None)) else (True, "")
    if not ok:
        raise FcbenchError(f"technique '{technique}' is not available here: {reason}")
    opts = parse_options(tech, options)
    src = Path(checkpoint)
    dst = Path(out) if out is not None else default_output(src, technique)
    if dst.is_dir():
        raise FcbenchError(f"compress: --out {dst} is a directory; give a checkpoint file name, e.g. "
                           f"{dst / default_output(src, technique).name}")
    if dst.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise FcbenchError(f"compress: --out {dst} must be a PyTorch checkpoint file ending in .pt")
    if dst.resolve() == src.resolve():
        raise FcbenchError(f"compress: --out {dst} is the input; pass another --out (the input is the "
                           "result's parent and must stay as it is)")
    ckpt = load_checkpoint(src)
    from fcbench.paths import output_file

    output_file(dst, "compress: --out")  # writable, before the technique runs
    context = context or TechniqueContext()
    if context.threads:
        torch.set_num_threads(context.threads)
    torch.manual_seed(context.seed)
    parent_sha = sha256_file(src)
    before = _params(ckpt.build_model())
    t0 = time.perf_counter()
    try:
        result = tech.apply(ckpt, opts, context)
    except FcbenchError:
        raise
    except Exception as exc:  # a technique's own failure: one line, a failed run
        raise FcbenchError(f"technique '{technique}' failed on {src.name}: {type(exc).__name__}: "
                           f"{first_line(exc)[:300]}", exit_code=1) from exc
    seconds = time.perf_counter() - t0
    if not isinstance(result, Checkpoint):
        raise FcbenchError(f"technique '{technique}' returned {type(result).__name__}, not a Checkpoint "
                           "(return checkpoint.with_model(model))", exit_code=1)
    model = result.build_model()  # the result must load again before it is written
    prof = profile(model, input_size=tuple(model.preprocessing.size))
    head = result.head if result.head and result.head.get("embedding_size") == int(model.output_size) else None
    step_options = {**options_dict(opts), "parent_file": relative_path(src, dst.parent)}
    lineage = [*(ckpt.manifest.lineage if ckpt.manifest else []),
               Step(tech.verb, technique=technique, options=step_options, parent_sha256=parent_sha)]
    manifest = save_checkpoint(dst, model, lineage=lineage, profile=prof, head_state=head)
    return TechniqueResult(
        input=src, output=dst, technique=technique, verb=tech.verb, options=options_dict(opts),
        parent_sha256=parent_sha, sha256=manifest.sha256, model=ckpt.model_name,
        lineage=manifest.lineage_summary(), params_before=before, params_after=_params(model),
        seconds=seconds, manifest=manifest,
    )
