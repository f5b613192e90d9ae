"""The live kernel side of portspace: the same API as the model, backed by real sockets in a
private Linux network namespace (see :mod:`portspace.live._kernel`), and the host inspector:
a snapshot of this namespace's sockets, processes, devices and sysctls (:mod:`._snapshot`),
loaded into the model to explain binds (:mod:`._query`) and port use (:mod:`._ports`).

Names are imported on first use (PEP 562), so ``portspace ls`` does not pay for the kernel
harness (subprocess, pickle, threading) and the harness does not pay for the inspector."""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "KernelNamespace": "_kernel", "KernelSocket": "_kernel", "Unavailable": "_kernel", "probe": "_kernel",
    "snapshot": ("_snapshot", "take"), "Snapshot": "_snapshot", "HostSocket": "_snapshot",
    "comm_of": "_snapshot", "endpoint_text": "_rows", "printable": "_rows", "state_name": "_rows",
    "Question": "_query", "Verdict": "_query", "explain": "_query", "parse_endpoint": "_query",
    "window_for": "_query",
    "ports_report": ("_ports", "report"), "PortsReport": "_ports",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = (where, name) if isinstance(where, str) else where
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
