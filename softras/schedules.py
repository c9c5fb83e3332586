"""Schedules: a value as a function of the step, for learning rates and for blur (sigma, gamma).

A schedule is a pure function of ``(step, steps)``, so resuming a run at any step gives
exactly the value an uninterrupted run had there; it holds no state to checkpoint.

The value goes from ``start`` to ``end`` while the run's progress ``step / (steps - 1)``
moves from the fraction ``begin`` to the fraction ``until`` (it is ``start`` before and
``end`` after). Kinds:

- ``constant``: ``end`` throughout (no annealing; the blur-free baseline);
- ``linear``: interpolates the value;
- ``log-linear``: interpolates its logarithm (a geometric sequence; needs positive values);
- ``cosine``: half a cosine from ``start`` to ``end``;
- ``step``: ``levels`` plateaus of equal length, geometric from ``start`` to ``end``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("constant", "linear", "log-linear", "cosine", "step")


@dataclass(frozen=True)
class Schedule:
    """A value annealed from ``start`` to ``end`` between the fractions ``begin`` and
    ``until`` of a run (see the module's docstring). ``schedule(step, steps)`` is the value
    at ``step`` (0-based) of a run of ``steps`` steps."""

    kind: str = "constant"
    start: float = 1.0
    end: float = 1.0
    begin: float = 0.0
    until: float = 1.0
    levels: int = 4

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(map(repr, KINDS))}, got {self.kind!r}")
        for name in ("start", "end", "begin", "until"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
        if not 0 <= self.begin <= self.until <= 1:
            raise ValueError(
                f"begin, until: expected fractions of the run with 0 <= begin <= until <= 1, "
                f"got {self.begin} and {self.until}"
            )
        if self.kind in ("log-linear", "step") and (self.start <= 0 or self.end <= 0):
            raise ValueError(f"start, end: a {self.kind} schedule needs values > 0, got {self.start} and {self.end}")
        if isinstance(self.levels, bool) or not isinstance(self.levels, int) or self.levels < 1:
            raise ValueError(f"levels: expected an integer >= 1, got {self.levels!r}")

    def progress(self, step: int, steps: int) -> float:
        """Where ``step`` lies in the annealing window, in [0, 1]."""
        frac = step / max(steps - 1, 1)
        if self.until <= self.begin:
            return 1.0 if frac >= self.until else 0.0
        return min(max((frac - self.begin) / (self.until - self.begin), 0.0), 1.0)

    def at(self, progress: float) -> float:
        """The value at ``progress`` in [0, 1] (clamped) of the annealing."""
        p = min(max(float(progress), 0.0), 1.0)
        a, b = float(self.start), float(self.end)
        if self.kind == "constant":
            return b
        if self.kind == "linear":
            return a + (b - a) * p
        if self.kind == "log-linear":
            return math.exp(math.log(a) + (math.log(b) - math.log(a)) * p)
        if self.kind == "cosine":
            return b + (a - b) * 0.5 * (1 + math.cos(math.pi * p))
        if self.levels < 2:
            return b
        k = min(int(p * self.levels), self.levels - 1)
        return a * (b / a) ** (k / (self.levels - 1))

    def __call__(self, step: int, steps: int) -> float:
        return self.at(self.progress(step, steps))

    @property
    def final(self) -> float:
        """The value at the end of the run."""
        return self.at(1.0)

    def held_at_end(self) -> Schedule:
        """The same values without annealing: ``end`` at every step."""
        return Schedule("constant", self.start, self.end)


@dataclass(frozen=True)
class BlurSchedule:
    """sigma_val and gamma_val annealed together (same kind and window), blurry to sharp."""

    sigma: Schedule
    gamma: Schedule

    @classmethod
    def create(
        cls,
        kind: str,
        sigma_val: tuple[float, float],
        gamma_val: tuple[float, float],
        begin: float = 0.0,
        until: float = 1.0,
        levels: int = 4,
    ) -> BlurSchedule:
        """From ``[start, end]`` pairs of sigma_val and gamma_val; errors name the key."""
        out = []
        for name, pair in (("sigma_val", sigma_val), ("gamma_val", gamma_val)):
            pair = list(pair)
            if len(pair) != 2:
                raise ValueError(f"{name}: expected [start, end], got {len(pair)} numbers")
            if min(pair) <= 0:
                raise ValueError(f"{name}: expected values > 0, got {pair}")
            try:
                out.append(Schedule(kind, float(pair[0]), float(pair[1]), float(begin), float(until), int(levels)))
            except ValueError as err:
                message = str(err)
                raise ValueError(
                    message if message.startswith(("kind", "begin", "levels")) else f"{name}.{message}"
                ) from None
        return cls(*out)

    def __call__(self, step: int, steps: int) -> tuple[float, float]:
        return self.sigma(step, steps), self.gamma(step, steps)

    @property
    def final(self) -> tuple[float, float]:
        return self.sigma.final, self.gamma.final

    def held_at_end(self) -> BlurSchedule:
        """sigma_val and gamma_val held at their final values (no blur)."""
        return BlurSchedule(self.sigma.held_at_end(), self.gamma.held_at_end())
