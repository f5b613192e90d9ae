"""The ``portspace`` command line (a thin layer over the public API)."""
from ._main import main

__all__ = ["main"]
