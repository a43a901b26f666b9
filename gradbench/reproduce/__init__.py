"""Published results, reproduced: each paper's suite, its numbers as printed, the band our
measurement must fall in and why, and the verdict (``gradbench reproduce``). Reads suites and
the store; the runs themselves go through the sweep like any other.

Modules: ``claims`` (``Published``, ``Band``, ``Claim``, ``Reproduction``, the verdict of one
claim), ``evidence`` (a reproduction's stored runs as its claims read them), ``comparison``
(the outcomes, the exit code and the printed table), ``catalog`` (the reproductions by name and
their suite files) and ``papers/`` (one module per paper).
"""

from typing import TYPE_CHECKING

from gradbench._lazy import attach

if TYPE_CHECKING:
    from gradbench.reproduce.catalog import cells_of, get, names, suite_of
    from gradbench.reproduce.claims import Band, Claim, Published, Reproduction
    from gradbench.reproduce.comparison import compare, exit_code, render
    from gradbench.reproduce.evidence import Evidence, MissingRuns

__getattr__, __dir__, __all__ = attach(__name__, __file__)
