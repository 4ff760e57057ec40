"""fcbench: compress vision models, convert them to edge runtimes, measure them."""

__version__ = "0.1.0"
