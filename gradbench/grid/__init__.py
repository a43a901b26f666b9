"""Suites and their expansion into cells (``gradbench.grid.expansion``)."""

from gradbench.grid.expansion import AXES, FLAGS, SETTINGS, Cell, Suite, SuiteError, default_suite, expand, load_suite, parse_suite

__all__ = ["Cell", "Suite", "SuiteError", "AXES", "FLAGS", "SETTINGS", "load_suite", "default_suite", "parse_suite", "expand"]
