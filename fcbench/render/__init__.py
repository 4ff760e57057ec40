"""The one render layer: every view of a result (terminal tables, Markdown, CSV, JSON; HTML later) lives
here, shared by the CLI, recipes and anything else that shows results. The library computes; this
package only formats. ``rows`` renders store rows, ``bench`` a bench matrix, ``views`` each verb's result.
"""

from fcbench.render.rows import FORMATS, render, short_names

__all__ = ["FORMATS", "render", "short_names"]
