"""The captures copied into tests/data/reference are still the files of shared/reference they were copied from, so
the suite needs nothing outside the checkout and the copies cannot drift from the originals unnoticed."""

from __future__ import annotations

from pathlib import Path

import pytest

COPIES = Path(__file__).resolve().parent / "data" / "reference"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference"
COPIED = sorted(p.relative_to(COPIES) for p in COPIES.rglob("*") if p.is_file() and p.name != "README.md")


def test_the_readers_and_lab_tests_have_their_captures_in_the_checkout() -> None:
    assert len(COPIED) >= 15 and all((COPIES / name).stat().st_size > 0 for name in COPIED)


@pytest.mark.parametrize("name", COPIED, ids=str)
def test_a_copy_equals_its_original_in_shared_reference(name: Path) -> None:
    original = SHARED / name
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not beside this checkout: the copies cannot be compared with their originals")
    assert original.is_file(), f"tests/data/reference/{name} has no original in shared/reference"
    assert (COPIES / name).read_bytes() == original.read_bytes()
