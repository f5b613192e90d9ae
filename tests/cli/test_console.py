"""The ``portspace`` executable (``cli.console``): ``main()``'s exit status and output, with the
interpreter's teardown skipped -- so what the teardown would have done must still happen:
atexit handlers run, buffered output reaches its reader, and argparse's exits keep their status.
Run as real processes (``python -m portspace``), the way a user runs it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _run(*args: str, code: str | None = None, stdin: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), NO_COLOR="1")
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "portspace", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, stdin=stdin)


def test_output_is_flushed_and_status_kept():
    proc = _run("demo", "--json")
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("}") and proc.stderr == ""
    big = _run("claims")          # more than one buffer's worth, all of it delivered
    assert big.returncode == 0 and len(big.stdout) > 8192 and big.stdout.endswith("\n")


@pytest.mark.parametrize("argv,status,where,text", [
    (["--version"], 0, "stdout", "portspace "),
    (["--help"], 0, "stdout", "usage: portspace"),
    (["ls", "--bogus"], 2, "stderr", "error:"),
    (["explain", "tcp", "1.2.3.4:99999"], 2, "stderr", "error:"),
    ([], 2, "stdout", "usage: portspace"),
])
def test_argparse_exits_keep_their_status(argv, status, where, text):
    proc = _run(*argv)
    assert proc.returncode == status
    assert text in getattr(proc, where) and "Traceback" not in proc.stderr


def test_atexit_handlers_run_before_the_fast_exit():
    code = ("import atexit, sys; atexit.register(lambda: print('handler ran', flush=True)); "
            "sys.argv[1:] = ['--version']; from portspace.cli import console; console()")
    proc = _run(code=code)
    assert proc.returncode == 0 and proc.stdout.splitlines() == [proc.stdout.splitlines()[0], "handler ran"]


def test_string_exit_codes_mean_what_sys_exit_says():
    code = ("import sys; from portspace.cli import _main; "
            "_main.main = lambda: sys.exit('no can do'); _main.console()")
    proc = _run(code=code)
    assert proc.returncode == 1 and proc.stderr == "no can do\n"


def test_a_reader_that_leaves_early_gets_no_traceback():
    """``portspace claims | head -1``: the pipe closes with output still buffered."""
    env = dict(os.environ, PYTHONPATH=SRC, NO_COLOR="1")
    proc = subprocess.run(f"{sys.executable} -m portspace claims | head -c 10", shell=True, capture_output=True,
                          text=True, env=env, timeout=120)
    assert len(proc.stdout) == 10 and "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


def test_with_other_threads_alive_the_normal_exit_waits_for_them():
    code = ("import sys, threading, time; from portspace.cli import _main; "
            "t = threading.Thread(target=lambda: (time.sleep(0.3), print('thread done', flush=True))); "
            "_main.main = lambda: (t.start(), 3)[1]; _main.console()")
    proc = _run(code=code)
    assert proc.returncode == 3 and proc.stdout == "thread done\n"
