"""Fixtures of the ``guests prepare`` lab tests: the checks' lab guests (tests/checks/lab_guests.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "checks"))

from lab_guests import lab_guest, stack  # noqa: E402

__all__ = ["lab_guest", "stack"]
