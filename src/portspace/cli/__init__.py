"""The ``portspace`` command line (a thin layer over the public API)."""
from ._main import console, main

__all__ = ["console", "main"]
