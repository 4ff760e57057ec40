"""fcbench: compress vision models, convert them to edge runtimes, measure them.

The Python API (see :mod:`fcbench.api`): ``fcbench.train``, ``fcbench.distill``, ``fcbench.evaluate``,
``fcbench.convert``, ``fcbench.bench``, ``fcbench.prune``, ``fcbench.quantize``,
``fcbench.create_model``, ``fcbench.run_report``, ... each returning a result that
``fcbench.Store.add`` can keep. Names are imported on first use, so ``import fcbench`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "create_model": "fcbench.api", "train": "fcbench.api", "distill": "fcbench.api",
    "evaluate": "fcbench.api", "convert": "fcbench.api",
    "bench": "fcbench.api", "inspect": "fcbench.api", "profile": "fcbench.api",
    "run_recipe": "fcbench.api", "prune": "fcbench.api", "quantize": "fcbench.api", "optimize": "fcbench.api",
    "TrainConfig": "fcbench.options", "DistillConfig": "fcbench.options",
    "EvalConfig": "fcbench.options", "ConvertConfig": "fcbench.options",
    "BenchConfig": "fcbench.options", "InspectConfig": "fcbench.options", "ProfileConfig": "fcbench.options",
    "ResultsConfig": "fcbench.options", "PruneConfig": "fcbench.options",
    "QuantizeConfig": "fcbench.options", "OptimizeConfig": "fcbench.options", "CompareConfig": "fcbench.options",
    "Hooks": "fcbench.hooks", "RunContext": "fcbench.results.context", "Store": "fcbench.results.store",
    "Row": "fcbench.results.store", "FcbenchError": "fcbench.errors", "Verb": "fcbench.verbs",
    "ReportConfig": "fcbench.options", "run_report": "fcbench.report",
    "evaluate_pipeline": "fcbench.pipeline_eval", "PipelineEvalResult": "fcbench.pipeline_eval",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'fcbench' has no attribute '{name}'")
