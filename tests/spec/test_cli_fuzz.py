"""The property test of issue 12, item 4: mutated real stacks (values, keys, types, deletions, byte garbage) and
random `mig fit` calls through the CLI, in-process. Every answer is an exit code 0/1/2 with a message - never a
traceback; an invalid stack (exit 1) names where. Bounded here; `tests/spec/stack_fuzz.py` runs thousands."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stack_fuzz import VERBS, make_stack, no_lab_environment, run_mig_fit, run_verb
from typer.testing import CliRunner

from gpufleet.cli.main import app

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False)


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where each case is written; no lab to be found, no secret variable set (nothing is reached)."""
    root = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("GPUFLEET_")]:
            mp.delenv(key)
        for key, value in no_lab_environment(root / "no-lab").items():
            mp.setenv(key, value)
        yield root / "Pulumi.fuzz.yaml"


@FUZZ
@given(rng=st.randoms(use_true_random=False), verb=st.sampled_from(VERBS))
def test_mutated_stacks_never_end_in_a_traceback(stack_file: Path, rng: object, verb: list[str]) -> None:
    stack_file.write_bytes(make_stack(rng))  # type: ignore[arg-type]
    outcome = run_verb(verb, stack_file)
    assert outcome.crash is None, f"{' '.join(verb)}: {outcome.crash}\n{outcome.output[-2000:]}"
    if outcome.exit_code == 1 and verb[0] in ("validate", "plan"):
        if "--json" in verb:  # exit 1: an invalid stack, every issue naming where
            issues = json.loads(outcome.output[: outcome.output.rindex("}") + 1])["issues"]
            assert issues and all(i["path"] and i["message"] for i in issues), issues
        else:
            assert "problem(s)" in outcome.output, outcome.output[-2000:]


@settings(max_examples=400, deadline=None)
@given(rng=st.randoms(use_true_random=False))
def test_random_mig_fit_calls_never_end_in_a_traceback(rng: object) -> None:
    outcome = run_mig_fit(rng)  # type: ignore[arg-type]
    assert outcome.crash is None, f"{' '.join(outcome.verb)[:300]}: {outcome.crash}"


def test_schema_is_one_json_document() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0 and json.loads(result.stdout)["type"] == "object"
