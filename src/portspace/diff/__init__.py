"""The differential checker: one step vocabulary run on the model and on the live kernel,
and scenario files (JSON or step scripts) translated into it.

Names are imported on first use (PEP 562), as in ``portspace`` and ``portspace.live``: the CLI
builds its ``matrix`` parser from ``diff._matrix``'s small tables without paying for the
scenario loader (dataclasses, pathlib, inspect), which ``portspace ls`` never uses."""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Step": "_script", "StepResult": "_script", "compare": "_script", "failures": "_script",
    "outcome": "_script", "parse": "_script", "run_script": "_script",
    "Claim": "_scenario", "Scenario": "_scenario", "ScenarioError": "_scenario", "Verdict": "_scenario",
    "judge": "_scenario", "load": "_scenario", "loads": "_scenario",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
