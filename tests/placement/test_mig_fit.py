"""``mig fit``: the exact MIG placement search, table-driven and checked against brute force."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.catalog import CatalogError, get_gpu
from gpufleet.placement.mig import fit

FITS = [
    # (gpu, profiles, expected (instance, start, size) in the given order)
    ("A100-80GB", ["7g.80gb"], [("7g.80gb", 0, 8)]),
    ("A100-80GB", ["4g.40gb", "3g.40gb"], [("4g.40gb", 0, 4), ("3g.40gb", 4, 4)]),
    # order does not matter: a first-fit would put 3g.40gb at slot 0 and refuse the 4g.40gb
    ("A100-80GB", ["3g.40gb", "4g.40gb"], [("3g.40gb", 4, 4), ("4g.40gb", 0, 4)]),
    ("A100-80GB", ["1g.10gb", "4g.40gb"], [("1g.10gb", 4, 1), ("4g.40gb", 0, 4)]),
    (
        "A100-80GB",
        ["2g.20gb", "2g.20gb", "2g.20gb", "1g.10gb"],
        [("2g.20gb", 0, 2), ("2g.20gb", 2, 2), ("2g.20gb", 4, 2), ("1g.10gb", 6, 1)],
    ),
    ("A100-80GB", ["4g.40gb", "2g.20gb", "1g.10gb"], [("4g.40gb", 0, 4), ("2g.20gb", 4, 2), ("1g.10gb", 6, 1)]),
    ("A100-80GB", ["1g.20gb"] * 4, [("1g.20gb", s, 2) for s in (0, 2, 4, 6)]),
    ("A100-80GB", ["1g.10gb"] * 7, [("1g.10gb", s, 1) for s in range(7)]),
    # 1g.20gb is the only small instance that may start at slot 6 and use slot 7
    (
        "A100-80GB",
        ["2g.20gb", "2g.20gb", "2g.20gb", "1g.20gb"],
        [("2g.20gb", 0, 2), ("2g.20gb", 2, 2), ("2g.20gb", 4, 2), ("1g.20gb", 6, 2)],
    ),
    ("A100-80GB", ["grid_a100d-4-40c", "nvidia_a100d-3-40c"], [("4g.40gb", 0, 4), ("3g.40gb", 4, 4)]),
    (
        "H100-80GB-SXM",
        ["grid_h100xm-3-40c", "2g.20gb", "2g.20gb"],
        [("3g.40gb", 4, 4), ("2g.20gb", 0, 2), ("2g.20gb", 2, 2)],
    ),
    (
        "A100-40GB",
        ["3g.20gb", "2g.10gb", "1g.5gb", "1g.5gb"],
        [("3g.20gb", 4, 4), ("2g.10gb", 0, 2), ("1g.5gb", 2, 1), ("1g.5gb", 3, 1)],
    ),
    ("A30", ["2g.12gb", "1g.6gb", "1g.6gb"], [("2g.12gb", 0, 2), ("1g.6gb", 2, 1), ("1g.6gb", 3, 1)]),
    ("H100-94GB NVL", ["4g.47gb", "3g.47gb"], [("4g.47gb", 0, 4), ("3g.47gb", 4, 4)]),
    (
        "A100-80GB",
        ["1g.10gb+me", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"],
        [("1g.10gb+me", 6, 1)] + [("1g.10gb", s, 1) for s in range(6)],
    ),
]


@pytest.mark.parametrize(("gpu", "profiles", "expected"), FITS, ids=[" ".join(c[1]) for c in FITS])
def test_fits(gpu: str, profiles: list[str], expected: list[tuple[str, int, int]]) -> None:
    result = fit(gpu, profiles)
    assert result.fits
    assert [(p.instance, p.start, p.size) for p in result.placements] == expected
    assert [p.profile for p in result.placements] == profiles  # as given
    doc = result.to_json()
    assert doc["fits"] is True and doc["placements"][0].keys() == {"profile", "instance", "start", "size"}


NO_FIT = [
    ("A100-80GB", ["4g.40gb", "3g.40gb", "3g.40gb"], {"4g.40gb", "3g.40gb"}, "overlap"),
    ("A100-80GB", ["7g.80gb", "1g.10gb"], {"7g.80gb", "1g.10gb"}, "overlap"),
    ("A100-80GB", ["1g.10gb"] * 8, {"1g.10gb"}, "at most 7 x 1g.10gb"),
    ("A100-80GB", ["2g.20gb"] * 4, {"2g.20gb"}, "at most 3 x 2g.20gb"),
    ("A100-80GB", ["4g.40gb", "4g.40gb"], {"4g.40gb"}, "at most 1 x 4g.40gb"),
    ("A30", ["2g.12gb+me", "1g.6gb+me"], {"2g.12gb+me", "1g.6gb+me"}, "only one +me"),
    # memory fits (2+2+2+2 = 8) but 2g.20gb cannot start at slot 6
    ("A100-80GB", ["2g.20gb", "2g.20gb", "2g.20gb", "1g.10gb", "1g.10gb"], {"2g.20gb", "1g.10gb"}, "overlap"),
]


@pytest.mark.parametrize(("gpu", "profiles", "conflicts", "words"), NO_FIT, ids=[" ".join(c[1]) for c in NO_FIT])
def test_does_not_fit(gpu: str, profiles: list[str], conflicts: set[str], words: str) -> None:
    result = fit(gpu, profiles)
    assert not result.fits
    assert set(result.conflicts) == conflicts
    assert words in result.reason
    # the conflicting subset is minimal: removing any one of its instances makes the rest fit
    rest = list(result.conflicts)
    for i in range(len(rest)):
        assert fit(gpu, rest[:i] + rest[i + 1 :]).fits


@pytest.mark.parametrize(
    ("gpu", "profile", "words"),
    [
        ("A100-80GB", "5g.50gb", "neither a MIG instance"),
        ("L40S", "1g.10gb", "no MIG mode"),
        ("A100-80GB", "grid_a100d-40c", "time-sliced"),
        ("B300", "1g.10gb", "unknown GPU model"),
    ],
)
def test_bad_input(gpu: str, profile: str, words: str) -> None:
    with pytest.raises(CatalogError) as err:
        fit(gpu, [profile])
    assert words in str(err.value)
    assert err.value.valid


def _brute_force(gpu: str, names: list[str]) -> bool:
    model = get_gpu(gpu)
    profiles = [model.mig_profile(n) for n in names]
    assert all(profiles)
    counts: dict[str, int] = {}
    for p in profiles:
        counts[p.name] = counts.get(p.name, 0) + 1  # type: ignore[union-attr]
        if counts[p.name] > p.max_instances:  # type: ignore[union-attr]
            return False
    if sum(p.media_extensions for p in profiles) > 1:  # type: ignore[union-attr]
        return False
    for starts in itertools.product(*(p.starts for p in profiles)):  # type: ignore[union-attr]
        taken = 0
        for p, s in zip(profiles, starts, strict=True):
            mask = ((1 << p.size) - 1) << s  # type: ignore[union-attr]
            if taken & mask:
                break
            taken |= mask
        else:
            return True
    return False


@pytest.mark.parametrize("gpu", ["A100-80GB", "A30", "A100-40GB"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_exact_search_agrees_with_brute_force(gpu: str, data: st.DataObject) -> None:
    names = [p.name for p in get_gpu(gpu).mig_profiles]
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=6))
    result = fit(gpu, chosen)
    assert result.fits == _brute_force(gpu, chosen)
    if result.fits:
        model = get_gpu(gpu)
        taken = 0
        for p in result.placements:
            inst = model.mig_profile(p.instance)
            assert inst is not None and p.start in inst.starts and p.size == inst.size
            mask = ((1 << p.size) - 1) << p.start
            assert not taken & mask
            taken |= mask
