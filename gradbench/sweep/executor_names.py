"""The executors by name: ``serial``, ``process`` and ``ray`` (``gradbench run --executor``)."""

from __future__ import annotations

from typing import Any

from gradbench.sweep.executor import Executor, SerialExecutor
from gradbench.sweep.process_pool import ProcessExecutor

__all__ = ["EXECUTORS", "make_executor"]

EXECUTORS = ("serial", "process", "ray")


def make_executor(name: str, **options: Any) -> Executor:
    """The executor called ``name``, with its options (``workers`` for ``process``;
    ``address``, ``cpus_per_run``, ``gpus_per_run`` for ``ray``).

    Raises:
        ValueError: for an unknown name.
        ExecutorError: for an option out of range (whether Ray is installed and the cells fit
            is for ``check``).
    """
    if name == "serial":
        return SerialExecutor()
    if name == "process":
        return ProcessExecutor(**options)
    if name == "ray":
        from gradbench.sweep.ray_executor import RayExecutor  # Ray is an optional extra

        return RayExecutor(**options)
    raise ValueError(f"unknown executor {name!r}; choose from: {', '.join(EXECUTORS)}")
