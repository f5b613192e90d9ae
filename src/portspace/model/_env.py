"""Injected randomness (and, later, time) for the model.

Theory of operation
-------------------
The model never draws randomness or reads a clock on its own (style rule 2).  Everything
random -- the bind(0) starting offset (``get_random_u32_below``), the UDP autobind start and
stride (``get_random_u32``) -- comes from an object with the :class:`Rng` protocol that the
caller passes in.  :class:`SeededRng` is a small deterministic generator (SplitMix64, written
here so that ``model/`` imports neither ``random`` nor ``time``): the same seed gives the same
ports on every run and every Python version.
"""
from __future__ import annotations

from typing import Protocol

_MASK64 = (1 << 64) - 1


class Rng(Protocol):
    def u32(self) -> int:
        """A uniform 32-bit value (``get_random_u32``)."""

    def below(self, n: int) -> int:
        """A uniform value in ``[0, n)`` (``get_random_u32_below``); ``n >= 1``."""


class SeededRng:
    """SplitMix64: tiny, fast, deterministic.  ``below`` uses the kernel's method, a 32x32
    multiply-high (``reciprocal_scale``-style), so its range mapping is Linux's."""

    __slots__ = ("_state",)

    def __init__(self, seed: int = 0) -> None:
        self._state = seed & _MASK64

    def _next64(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def u32(self) -> int:
        return self._next64() >> 32

    def below(self, n: int) -> int:
        return (self.u32() * n) >> 32
