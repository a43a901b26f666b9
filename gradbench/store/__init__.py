"""The results database: one SQLite file.

Modules: ``database`` (``Store``: one transaction per run, resume by key, reading runs, curves
and statistics), ``schema`` (the tables, their version, additive migrations) and ``claims``
(which sweep runs which cell now, so concurrent sweeps share a grid and a killed one's cells
are taken over).
"""

from typing import TYPE_CHECKING

from gradbench._lazy import attach

if TYPE_CHECKING:
    from gradbench.store.database import ACTIVATION_STATISTICS, DEFAULT_DB, LAYER_STATISTICS, METRIC_COLUMNS, Store, StoreError

__getattr__, __dir__, __all__ = attach(__name__, __file__)
