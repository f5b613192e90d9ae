"""The live kernel side of portspace: the same API as the model, backed by real sockets in a
private Linux network namespace (see :mod:`portspace.live._kernel`), and the host inspector:
a snapshot of this namespace's sockets, processes, devices and sysctls (:mod:`._snapshot`),
loaded into the model to explain binds (:mod:`._query`) and port use (:mod:`._ports`)."""
from ._kernel import KernelNamespace, KernelSocket, Unavailable, probe
from ._ports import PortsReport, report as ports_report
from ._query import Question, Verdict, explain, parse_endpoint, window_for
from ._snapshot import HostSocket, Snapshot, comm_of, take as snapshot

__all__ = ["KernelNamespace", "KernelSocket", "Unavailable", "probe", "snapshot", "Snapshot", "HostSocket",
           "Question", "Verdict", "explain", "parse_endpoint", "window_for", "ports_report", "PortsReport", "comm_of"]
