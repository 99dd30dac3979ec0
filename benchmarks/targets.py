"""The one convention every benchmark follows, so `make bench` (scripts/bench.sh) runs them all and sums them up:

- for each target, one line on stdout:  ``TARGET <name>: met (<figure> vs <target>)``  or
  ``TARGET <name>: missed (<figure> vs <target>)``  (``<name>`` without a colon);
- exit status **0** when every target is met, **3** when at least one is missed; anything else (1, a traceback)
  means the benchmark could not measure, and is reported as an error.

A benchmark that exits 0 or 3 without a TARGET line is reported as an error too (it measured nothing checkable).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MET = 0
MISSED = 3


@dataclass(frozen=True)
class Target:
    name: str
    met: bool
    figure: str  # what was measured, with its unit: "412 ms"
    target: str  # what it is held to: "< 1000 ms"

    def line(self) -> str:
        return f"TARGET {self.name}: {'met' if self.met else 'missed'} ({self.figure} vs {self.target})"


def report(targets: Iterable[Target]) -> int:
    """Print a TARGET line per target; the exit status of the benchmark (MET or MISSED)."""
    targets = list(targets)
    for t in targets:
        print(t.line(), flush=True)
    return MET if targets and all(t.met for t in targets) else MISSED
