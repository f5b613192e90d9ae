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
from ._namespace import Explanation, Namespace
from ._socket import Socket
from ._tables import Tables
from .model._env import Rng, SeededRng
from .model._errors import Cause, OutOfScope
from .model._explain import Reason, SockInfo

__version__ = "0.1.0"

__all__ = ["Namespace", "Socket", "Explanation", "Tables", "Reason", "SockInfo", "Cause", "OutOfScope",
           "Rng", "SeededRng", "__version__"]
