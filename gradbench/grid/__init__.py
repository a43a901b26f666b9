"""From a suite to the cells it asks for.

Modules: ``suite`` (what a grid varies and sets, suite files in TOML, errors with file and
line), ``cell`` (``Cell``: one run, fully specified, and its stable key) and ``expansion``
(every value checked, the grid's size checked, then the cells).
"""

from typing import TYPE_CHECKING

from gradbench._lazy import attach

if TYPE_CHECKING:
    from gradbench.grid.cell import Cell
    from gradbench.grid.expansion import MAX_CELLS, expand, grid_size
    from gradbench.grid.suite import AXES, SETTINGS, Suite, SuiteError, default_suite, load_suite, parse_suite

__getattr__, __dir__, __all__ = attach(__name__, __file__)
