"""The live kernel side of portspace: the same API as the model, backed by real sockets in a
private Linux network namespace (see :mod:`portspace.live._kernel`)."""
from ._kernel import KernelNamespace, KernelSocket, Unavailable, probe

__all__ = ["KernelNamespace", "KernelSocket", "Unavailable", "probe"]
