"""The stack example in the README is a valid stack: it is the first thing a newcomer copies."""

from __future__ import annotations

import re
from pathlib import Path

from ruamel.yaml import YAML

from gpufleet.spec.stack import parse_stack
from gpufleet.spec.validate import validate_fleet

README = Path(__file__).resolve().parents[2] / "README.md"


def _stack_example() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    examples = [b for b in blocks if "gpufleet:fleet:" in b and "version: v1" in b]  # whole stacks, not fragments
    assert examples, "README has no yaml block with a gpufleet:fleet stack"
    return examples[0]


def test_readme_stack_example_validates_clean() -> None:
    stack = parse_stack(YAML(typ="safe").load(_stack_example()), name="readme")
    issues = validate_fleet(stack.fleet)
    assert issues == [], "\n".join(map(str, issues))
    assert {vm.name for vm in stack.fleet.vms} == {"inference-01", "training-01"}
