"""The guardrails of ``gpufleet.policy`` on stacks built from the lab stack: each rule fires on the stack made to
violate it, with a message naming the resource, the field and what is valid; the shipped stacks pass their stage's
config; the config file is refused with named keys when wrong; the program's facts round-trip to the same subject."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from policy_cases import LAB_CONFIG, ROOT, VIOLATIONS, lab_document, make_plain_secret, make_prod, make_too_many
from ruamel.yaml import YAML

from gpufleet.errors import SpecError
from gpufleet.policy import (
    RULES,
    evaluate,
    facts_props,
    load_settings,
    provider_violations,
    settings,
    subject_from_props,
    subject_of_stack,
)
from gpufleet.spec.stack import parse_stack


def judge(document: dict[str, Any], name: str = "lab", config: dict[str, Any] | None = None) -> list[str]:
    """Every finding on the stack, as ``rule|level|text``; the lab's own config unless one is given."""
    stack = parse_stack(document, name=name)
    used = settings(json.loads(LAB_CONFIG.read_text()) if config is None else config)
    return [f"{f.violation.rule}|{f.enforcement}|{f.violation}" for f in evaluate(subject_of_stack(stack), used)]


def test_the_lab_stack_passes_its_stage_config() -> None:
    assert judge(lab_document()) == []


@pytest.mark.parametrize("stage", ["lab", "dev", "staging", "prod"])
def test_every_shipped_stage_passes_its_own_config(stage: str) -> None:
    document = YAML(typ="safe").load((ROOT / "stacks" / f"Pulumi.{stage}.yaml").read_text())
    config = json.loads((ROOT / "policy" / "config" / f"{stage}.json").read_text())
    assert [f for f in judge(document, stage, config) if "|mandatory|" in f] == []


@pytest.mark.parametrize(("rule", "mutate", "name", "extra", "expected"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_each_rule_fires_on_its_violating_stack_only(
    rule: str, mutate: Any, name: str, extra: dict, expected: str
) -> None:
    document = copy.deepcopy(lab_document())
    mutate(document)
    config = {**json.loads(LAB_CONFIG.read_text()), **extra}
    found = judge(document, name, config)
    assert [f.split("|")[0] for f in found] == [rule], found
    assert expected in found[0], found
    assert "|mandatory|" in found[0]
    assert "valid" in found[0]  # every message says what would be valid


def test_every_rule_has_a_violating_stack_here() -> None:
    assert sorted(v[0] for v in VIOLATIONS) == sorted(r.name for r in RULES)


def test_a_plain_secret_is_named_never_shown() -> None:
    document = lab_document()
    make_plain_secret(document)
    found = judge(document)
    assert found and all("PLAIN-LICENSE-KEY-VALUE" not in f for f in found)
    stack = parse_stack(document, name="lab")
    props = facts_props(stack, {"gpufleet:hostLicense": False}, False)
    assert "PLAIN-LICENSE-KEY-VALUE" not in json.dumps(props)
    assert props["plainSecretKeys"] == ["gpufleet:hostLicense"]


def test_a_key_named_like_a_secret_is_one_even_without_a_reference() -> None:
    document = lab_document()
    document["config"]["gpufleet:vcenterPassword"] = "x"
    document["config"]["gpufleet:brownfield"] = True
    found = judge(document)
    assert len(found) == 1 and "config.gpufleet:vcenterPassword" in found[0]


def test_a_secure_key_is_not_plain() -> None:
    document = lab_document()
    document["config"]["gpufleet:hostLicense"] = {"secure": "v1:abc"}
    assert judge(document) == []


def test_enforcement_comes_from_the_config_all_then_the_rule() -> None:
    document = lab_document()
    make_too_many(document)
    assert judge(document, config={"all": "advisory", "max-unavailable-share": {"share": 0.5}})[0].split("|")[1] == (
        "advisory"
    )
    assert judge(document, config={"max-unavailable-share": "disabled"}) == []


def test_the_default_share_is_a_quarter_of_the_cluster() -> None:
    found = judge(lab_document(), config={})  # maxUnavailable 2 of 4 hosts
    assert len(found) == 1 and "more than 25% of the cluster's 4 hosts" in found[0] and "valid: 1..1" in found[0]


def test_prod_stacks_are_named_by_the_config() -> None:
    document = lab_document()
    make_prod(document)
    assert judge(
        document, "lab", {"max-unavailable-share": {"share": 0.5}, "prod-rollout-safety": {"prodStacks": ["lab"]}}
    )
    assert not judge(
        document, "lab-prod", {"max-unavailable-share": {"share": 0.5}, "prod-rollout-safety": {"prodStacks": ["prod"]}}
    )


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"max-unavailable": {"share": 0.5}}, "no such policy rule (did you mean max-unavailable-share?)"),
        ({"all": "strict"}, "is not an enforcement level"),
        ({"max-unavailable-share": {"share": 2}}, "2 is out of range"),
        ({"max-unavailable-share": {"fraction": 0.5}}, "no such parameter"),
        ({"driver-branch-allowed": {"allowedBranches": "550"}}, "must be a list of strings"),
        ([], "a policy config is a JSON object"),
    ],
)
def test_a_bad_config_is_refused_naming_the_key(document: Any, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        settings(document, "cfg.json")
    assert expected in str(caught.value)
    assert "cfg.json" in str(caught.value)


def test_a_config_file_that_is_not_json_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text('{\n  "all": mandatory\n}\n')
    with pytest.raises(SpecError, match=r"not a JSON policy config \(line 2"):
        load_settings(bad)


def test_the_program_facts_give_back_the_same_subject() -> None:
    stack = parse_stack(lab_document(), name="lab")
    props = json.loads(json.dumps(facts_props(stack, {"gpufleet:x": True}, True)))  # as the engine hands them over
    back = subject_from_props(props)
    direct = subject_of_stack(stack)
    assert back.fleet == direct.fleet and back.vcenter == direct.vcenter and back.stack == "lab"
    assert back.allow_unverified_ssl is True


def test_a_vsphere_provider_without_tls_verification_is_a_violation() -> None:
    found = provider_violations("pulumi:providers:vsphere", "vc", {"allowUnverifiedSsl": "true"})
    assert [str(v) for v in found] == [
        "provider vc: allowUnverifiedSsl: is true: vCenter's TLS certificate would not be verified "
        "(valid: false; give the CA instead)"
    ]
    assert provider_violations("pulumi:providers:vsphere", "vc", {"allowUnverifiedSsl": False}) == []
    assert provider_violations("pulumi:providers:aws", "x", {"allowUnverifiedSsl": True}) == []
