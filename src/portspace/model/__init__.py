"""The pure kernel model: no I/O, no clock, no randomness of its own (see each module's
theory-of-operation header).  Import the public API from ``portspace`` instead."""
