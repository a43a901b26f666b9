"""What the stored runs say: tables, figures and files. Reads the store only.

Modules: ``flat`` (the table ``gradbench run`` prints), ``pivot`` (a run's axes, ``--where``,
pivots of one metric over seeds), ``tables`` (pivots as Markdown, LaTeX, CSV, HTML), ``tuning``
(each configuration's best learning rate, chosen on validation), ``profiles`` (Dolan & More
performance profiles), ``plots`` (matplotlib figures), ``html_page`` (the one-page HTML
report), ``export`` (long-format rows), ``results`` (the store as pandas DataFrames) and ``files`` (output files written whole or not at all).
"""

from typing import TYPE_CHECKING

from gradbench._lazy import attach

if TYPE_CHECKING:
    from gradbench.report.flat import FORMATS, Table, build_table, cell_texts, config_text, constants_text, render, verdict_text
    from gradbench.report.html_page import html_report
    from gradbench.report.pivot import METRICS, build_pivots, select_runs
    from gradbench.report.profiles import performance_profiles
    from gradbench.report.results import Results
    from gradbench.report.tables import render_pivots
    from gradbench.report.tuning import tune

__getattr__, __dir__, __all__ = attach(__name__, __file__)
