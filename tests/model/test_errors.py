"""Errno choice lives in one table (style rule 3), and refusals are the stdlib's own classes."""
from __future__ import annotations

import errno

import pytest

from portspace.model._errors import ERRNO_DEFAULT, Cause, Op, Proto, errno_for, refuse


def test_every_cause_has_an_errno():
    """Each cause has a default errno, except the one whose errno depends on the call."""
    from portspace.model._errors import ERRNO_FOR
    op_specific = {c for (_, _, c) in ERRNO_FOR} - set(ERRNO_DEFAULT)
    assert op_specific == {Cause.NO_EPHEMERAL_PORT}
    assert set(ERRNO_DEFAULT) | op_specific == set(Cause)


@pytest.mark.parametrize("op,proto,want", [
    pytest.param(Op.BIND, Proto.TCP, errno.EADDRINUSE, id="tcp bind exhaustion: EADDRINUSE"),
    pytest.param(Op.BIND, Proto.UDP, errno.EADDRINUSE, id="udp bind exhaustion: EADDRINUSE"),
    pytest.param(Op.LISTEN, Proto.TCP, errno.EADDRINUSE, id="tcp listen exhaustion: EADDRINUSE"),
    pytest.param(Op.CONNECT, Proto.TCP, errno.EADDRNOTAVAIL, id="tcp connect exhaustion: EADDRNOTAVAIL"),
    pytest.param(Op.CONNECT, Proto.UDP, errno.EAGAIN, id="udp connect exhaustion: EAGAIN"),
    pytest.param(Op.SENDTO, Proto.UDP, errno.EAGAIN, id="udp sendto exhaustion: EAGAIN"),
])
def test_exhaustion_errno_by_operation(op, proto, want):
    """Spec §0.6 / §5.6: one cause, four errnos."""
    assert errno_for(op, proto, Cause.NO_EPHEMERAL_PORT) == want


@pytest.mark.parametrize("cause,cls", [
    (Cause.PRIVILEGED_PORT, PermissionError),
    (Cause.SYSCTL_UNKNOWN, FileNotFoundError),
    (Cause.ADDR_IN_USE, OSError),
])
def test_refusal_is_the_stdlib_class(cause, cls):
    e = refuse(Op.BIND, Proto.TCP, cause)
    assert type(e) is cls
    assert str(e) == f"[Errno {e.errno}] {__import__('os').strerror(e.errno)}"
    assert e.cause is cause
