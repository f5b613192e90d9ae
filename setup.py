"""Only the optional C accelerator lives here; everything else is in pyproject.toml.

``portspace.live._speedups`` (src/portspace/live/_speedups.c) speeds up the host inspector's
per-row loops.  It is optional: where no C compiler exists the build skips it and portspace
runs its pure-Python loops, which give the same answers (tests/live/test_speedups.py)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("portspace.live._speedups", ["src/portspace/live/_speedups.c"], optional=True,
                             extra_compile_args=["-O2"])])
