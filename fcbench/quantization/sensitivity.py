"""Per-layer quantization sensitivity, for ``quantize --keep-sensitive K``.

Each layer the method can leave in float is scored by quantizing *only that layer* (every other
one kept in float) and measuring how far the result's outputs move from the float parent's on the
fidelity images: ``1 - mean cosine``. The K layers with the highest scores are the ones whose
quantization hurts most; the final artifact keeps them in float. It costs one quantization and one
short run per layer, so it is meant for the tens of layers of the models fcbench targets.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from fcbench.errors import FcbenchError
from fcbench.quantization.base import Calibration, Source, Spec

SENSITIVITY_IMAGES = 16


def most_sensitive(method: Any, source: Source, options: Any, spec: Spec, images: Calibration, reference: Path,
                   context: Any, cfg: Any, hooks: Any) -> list[dict[str, Any]]:
    """Every layer's score, most sensitive first (see the module doc)."""
    from fcbench.quantization import artifact_manifest, fidelity

    layers = method.layers(source, options)
    if not layers:
        raise FcbenchError(f"quantize: --keep-sensitive: {method.name} found no layer it can keep in float in "
                           f"{source.path.name}")
    if cfg.keep_sensitive > len(layers):
        raise FcbenchError(f"quantize: --keep-sensitive {cfg.keep_sensitive} asks for more layers than "
                           f"{source.path.name} has that {method.name} quantizes ({len(layers)})")
    few = Calibration(images.images[:SENSITIVITY_IMAGES], images.source)
    folder = source.stage / "sensitivity"
    folder.mkdir(exist_ok=True)
    scores = []
    for i, layer in enumerate(layers):
        hooks.log(f"sensitivity {i + 1}/{len(layers)}: {layer}")
        # one probe per layer: plain quantization, never the method's accuracy control
        one = replace(spec, keep_float=[x for x in layers if x != layer], max_drop=None, eval_data=None)
        target = folder / f"{i}-{source.path.stem}{Path(source.path.name).suffix or '.bin'}"
        from fcbench import formats

        target = target.with_suffix(formats.get(method.format).suffix)
        made = method.quantize(source, options, one, target, context)
        fid = fidelity(made.file, artifact_manifest(source.manifest, made, method.format), reference, few,
                       cfg.backend or method.backend, cfg.threads)
        scores.append({"layer": layer, "cosine_mean": fid["cosine_mean"], "score": 1.0 - fid["cosine_mean"]})
    return sorted(scores, key=lambda s: -s["score"])
