"""Shared fixtures: a model namespace, a kernel namespace (skipped with the probe's reason
where root or unshare is missing), and ``backend`` which runs a test on both."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import portspace
from portspace.live import KernelNamespace, probe

settings.register_profile("ci", max_examples=200, derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("long", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The addresses and device the live experiments used (../shared/linux-port-experiments/README.md):
# 127.0.0.2/8 and 192.168.1.100/32 on lo, and an unused device d0 for SO_BINDTODEVICE.
STANDARD_SETUP = """
ns addr 127.0.0.2/8
ns addr 192.168.1.100/32
ns device d0
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow (real-time kernel waits); run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def kernel_or_skip() -> KernelNamespace:
    reason = probe()
    if reason is not None:
        pytest.skip(f"live kernel namespace unavailable: {reason}")
    return KernelNamespace()


def make_ns(backend: str, standard: bool = True):
    ns = portspace.Namespace(seed=7) if backend == "model" else kernel_or_skip()
    if standard:
        from portspace.diff import failures, run_script
        bad = failures(run_script(ns, STANDARD_SETUP))
        assert not bad, bad
    return ns


@pytest.fixture(params=["model", pytest.param("kernel", marks=pytest.mark.kernel)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def any_ns(backend: str):
    """A fresh namespace with the standard setup, on the model or the kernel."""
    ns = make_ns(backend)
    yield ns
    if backend == "model":
        ns.check_invariants()
        assert ns.socket_count() == 0, "test leaked model sockets"
    else:
        assert ns.socket_count() == 0, "test leaked kernel sockets"
        ns.close()


@pytest.fixture
def model_ns():
    ns = make_ns("model")
    yield ns
    ns.check_invariants()


@pytest.fixture
def kernel_ns():
    ns = make_ns("kernel")
    yield ns
    ns.close()
