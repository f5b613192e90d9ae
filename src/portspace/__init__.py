"""portspace: the Linux 6.18 port manager as an executable, explainable model.

This package contains no networking code in its model: ``Namespace`` is an in-memory Linux
network namespace whose sockets have the stdlib ``socket`` API.  ``portspace.live`` is the only
package that touches the host (a private network namespace for differential tests, and the
host inspector).

>>> import portspace, socket
>>> ns = portspace.Namespace(seed=1)
>>> a = ns.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(("127.0.0.1", 5556))
>>> b = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
>>> try:
...     b.bind(("127.0.0.1", 5556))
... except OSError as e:
...     print(e)
[Errno 98] Address already in use
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Names are imported on first use (PEP 562): ``portspace ls`` reads the host without loading
# the model, and the model's import cost (~25 ms) is paid only by what uses it.
_WHERE = {
    "Namespace": "._namespace", "Explanation": "._namespace", "Socket": "._socket", "Tables": "._tables",
    "Rng": ".model._env", "SeededRng": ".model._env", "Cause": ".model._errors", "OutOfScope": ".model._errors",
    "Reason": ".model._explain", "SockInfo": ".model._explain",
}

__all__ = ["Namespace", "Socket", "Explanation", "Tables", "Reason", "SockInfo", "Cause", "OutOfScope",
           "Rng", "SeededRng", "__version__"]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
