"""Model zoo: face-embedding backbones, classifiers, margin heads and a MAC counter.

Models are factories in the ``fcbench.models`` entry-point group (see ``pyproject.toml``);
third-party packages register theirs the same way, decorated with :func:`register_model`.
"""

from __future__ import annotations

from fcbench.models.heads import HEADS, create_head
from fcbench.models.profile import profile
from fcbench.models.registry import (
    ModelSpec,
    create,
    describe,
    load_weights,
    names,
    read_state_dict,
    register_model,
)

__all__ = [
    "HEADS",
    "ModelSpec",
    "create",
    "create_head",
    "describe",
    "load_weights",
    "names",
    "profile",
    "read_state_dict",
    "register_model",
]
