"""The ``portspace`` pytest fixture (entry point pytest11), exercised in a pytester run."""
from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

pytest_plugins = ["pytester"]

USER_TESTS = '''
import errno, socket
import pytest

def serve(make_socket, port):
    """The code under test: takes a socket factory (socket.socket in production)."""
    s = make_socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s

def test_second_server_on_a_busy_port(portspace):
    serve(portspace.socket, 8080)
    with pytest.raises(OSError) as e:
        serve(portspace.socket, 8080)
    assert e.value.errno == errno.EADDRINUSE
    assert "blocked by socket #3" in str(e.value.reasons[0])

def test_each_test_gets_a_fresh_namespace(portspace):
    serve(portspace.socket, 8080)          # the previous test's listener is gone
    assert portspace.socket_count() == 1

def test_fixed_seed_same_ephemeral_port(portspace):
    import portspace as ps
    a = portspace.socket(); a.bind(("127.0.0.1", 0))
    b = ps.Namespace(seed=0).socket(); b.bind(("127.0.0.1", 0))
    assert a.getsockname() == b.getsockname()

@pytest.mark.portspace_seed(5)
def test_seed_marker(portspace):
    import portspace as ps
    a = portspace.socket(); a.bind(("127.0.0.1", 0))
    b = ps.Namespace(seed=5).socket(); b.bind(("127.0.0.1", 0))
    assert a.getsockname() == b.getsockname()
'''


def _plugin_args() -> list[str]:
    # installed with its entry point, pytest loads the plugin by itself; from a checkout, ask for it
    eps = metadata.entry_points(group="pytest11")
    return [] if any(ep.value == "portspace.pytest_plugin" for ep in eps) else ["-p", "portspace.pytest_plugin"]


def test_fixture_in_a_user_test_suite(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest(*_plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_a_failing_user_test_fails(pytester):
    pytester.makepyfile(test_user='''
def test_fails(portspace):
    s = portspace.socket(); s.bind(("127.0.0.1", 80)); s.bind(("127.0.0.1", 81))
''')
    result = pytester.runpytest(*_plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*OSError: [[]Errno 22[]] Invalid argument*"])


def test_entry_point_declared():
    doc = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert doc["project"]["entry-points"]["pytest11"] == {"portspace": "portspace.pytest_plugin"}
    assert "examples/*.json" in doc["tool"]["setuptools"]["package-data"]["portspace"]


def test_readme_example_runs(pytester):
    """The README's fixture example, as a user would paste it."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Testing your own code", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    pytester.makepyfile(test_readme=code)
    result = pytester.runpytest(*_plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
