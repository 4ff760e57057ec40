"""A third-party verb: ``fcbench lineage ARTIFACT`` lists the steps that made an artifact, from its manifest.

It is a command and a recipe step (``- lineage: {artifact: ...}``) with nothing more than this module and
one entry-point line, like fcbench's own verbs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fcbench.options import opt
from fcbench.verbs import Verb


@dataclass
class LineageConfig:
    artifact: str = opt("", argument=True, help="An artifact or checkpoint with its manifest")
    last: int | None = opt(None, help="Only the last N steps")


@dataclass
class LineageResult:
    artifact: str
    steps: list[dict] = field(default_factory=list)

    def to_rows(self) -> list:
        return []


def run(cfg: LineageConfig, ctx=None, hooks=None) -> LineageResult:
    from fcbench.artifact import read_manifest

    manifest = read_manifest(cfg.artifact)
    steps = [{"verb": s.verb, "technique": s.technique, "parent_sha256": s.parent_sha256[:12]}
             for s in manifest.lineage]
    return LineageResult(cfg.artifact, steps[-cfg.last:] if cfg.last else steps)


def render(result: LineageResult, fmt: str) -> list:
    if fmt == "json":
        return [json.dumps({"artifact": result.artifact, "steps": result.steps}) + "\n"]
    return ["".join(f"{i}. {s['verb']}({s['technique']})\n" for i, s in enumerate(result.steps, 1))]


LINEAGE = Verb("lineage", LineageConfig, run, "List the steps that made an artifact (from its manifest).", render,
               formats=("table", "json"), stores=False)
