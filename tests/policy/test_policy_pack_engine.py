"""The policy pack (``policy/``) through the real engine: ``gpufleet pulumi preview --policy-pack policy`` on the
lab stack passes; on each stack of ``policy_cases.VIOLATIONS`` it exits non-zero with that rule's message, and
``gpufleet validate --policy`` says the same offline (one implementation). A lab of its own (its dir and ports):
a preview reads the hosts and VMs, which other tests reset and reboot."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from own_lab import engine_built, own_lab
from policy_cases import LAB_CONFIG, ROOT, VIOLATIONS, lab_document
from ruamel.yaml import YAML

from gpufleet.engine import workspace as engine

pytestmark = [pytest.mark.engine, pytest.mark.slow]

PLAIN = "PLAIN-LICENSE-KEY-VALUE"  # policy_cases.make_plain_secret's value: never in any output


class Engine:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.project = engine.sync_workspace(Path(env["GPUFLEET_ENGINE_STATE"]))

    def run(self, *args: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "gpufleet", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=self.env, cwd=ROOT)

    def add_stack(self, name: str, document: dict[str, Any]) -> None:
        with open(self.project / "stacks" / f"Pulumi.{name}.yaml", "w") as fh:
            YAML(typ="safe").dump(document, fh)
        done = self.run("pulumi", "stack", "init", name)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def pulumi_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine_built()
    with own_lab("POLICY", "/tmp/gpufleet-policy-lab", 3122, 19943) as lab:
        state = tmp_path_factory.mktemp("policy-engine-state")
        yield Engine(lab.environ(GPUFLEET_ENGINE_STATE=str(state)))


def test_the_lab_stack_passes_the_pack_through_the_engine(pulumi_engine: Engine) -> None:
    pulumi_engine.add_stack("lab", lab_document())
    done = pulumi_engine.run("pulumi", "preview", "--stack", "lab", "--policy-pack", "policy")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output  # under policy/config/lab.json, which the wrapper adds (defaults refuse: below)
    assert "gpufleet@v0.1.0" in output
    assert "[mandatory]" not in output and "[advisory]" not in output


def test_the_pack_refuses_what_its_config_refuses(pulumi_engine: Engine) -> None:
    """No stage config: the default share (25%) refuses the lab's maxUnavailable 2 of 4 hosts."""
    pulumi_engine.add_stack("lab-defaults", lab_document())
    defaults = pulumi_engine.project / "policy-defaults.json"
    defaults.write_text("{}")
    done = pulumi_engine.run(
        "pulumi", "preview", "--stack", "lab-defaults", "--policy-pack", "policy", "--policy-pack-config", str(defaults)
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "[mandatory]  max-unavailable-share" in output and "more than 25% of the cluster's 4 hosts" in output


@pytest.mark.parametrize(("rule", "mutate", "name", "extra", "expected"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_each_violating_stack_is_blocked_by_the_engine_and_offline(
    pulumi_engine: Engine, tmp_path: Path, rule: str, mutate: Any, name: str, extra: dict, expected: str
) -> None:
    stack = name if name != "lab" else f"case-{rule}"
    document = lab_document()
    mutate(document)
    pulumi_engine.add_stack(stack, document)
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({**json.loads(LAB_CONFIG.read_text()), **extra}))

    done = pulumi_engine.run(
        "pulumi", "preview", "--stack", stack, "--policy-pack", "policy", "--policy-pack-config", str(config)
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"[mandatory]  {rule}" in output, output
    assert expected in output, output
    assert PLAIN not in output

    stack_file = tmp_path / f"Pulumi.{stack}.yaml"
    with open(stack_file, "w") as fh:
        YAML(typ="safe").dump(document, fh)
    offline = pulumi_engine.run("validate", str(stack_file), "--policy-config", str(config), "--json")
    assert PLAIN not in offline.stdout + offline.stderr
    report = json.loads(offline.stdout)
    if report["valid"]:  # a guardrail: the stack is valid, the policy says no
        assert offline.returncode == 2
        violations = report["policy"]["violations"]
        assert [v["rule"] for v in violations] == [rule]
        text = f"{violations[0]['resource']}: {violations[0]['field']}: {violations[0]['message']}"
    else:  # a hardware rule of the spec: the stack is invalid, the issue carries the rule's name
        assert offline.returncode == 1
        assert [i["rule"] for i in report["issues"]] == [rule]
        issue = report["issues"][0]
        text = f"gpufleet:fleet.{issue['path']}: {issue['message']}"
    assert expected.split(": ", 1)[-1] in text or expected in text, text
