"""Options of the train verb: they live with every other verb's in :mod:`fcbench.options`."""

from fcbench.options import TrainConfig, from_mapping

__all__ = ["TrainConfig", "from_mapping"]
