"""The ``portspace`` pytest fixture: a fresh model network namespace per test, in the manner of
pyfakefs's ``fs``.  Registered through the ``pytest11`` entry point, so installing portspace is
enough::

    def test_my_server_reports_a_busy_port(portspace):
        blocker = portspace.socket()
        blocker.bind(("127.0.0.1", 8080)); blocker.listen()
        with pytest.raises(OSError) as e:
            start_server(portspace.socket, port=8080)   # the code under test, given a socket factory
        assert e.value.errno == errno.EADDRINUSE

The namespace has a fixed seed (``PORTSPACE_SEED``, 0) so ephemeral ports are the same on every
run; ``@pytest.mark.portspace_seed(N)`` picks another.  Nothing touches the host's ports.  At the
end of the test the model's invariants are checked.
"""
from __future__ import annotations

from typing import Iterator

import pytest

PORTSPACE_SEED = 0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "portspace_seed(n): the RNG seed of the portspace fixture's namespace")


@pytest.fixture
def portspace(request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh ``portspace.Namespace`` (the Linux 6.18 port manager in memory, no real sockets)."""
    import portspace as _portspace

    marker = request.node.get_closest_marker("portspace_seed")
    seed = int(marker.args[0]) if marker is not None and marker.args else PORTSPACE_SEED
    ns = _portspace.Namespace(seed=seed)
    yield ns
    ns.check_invariants()
