"""Value rules at the spec edge (issue 12, item 5): a real driver version that matches its bundle's name, every
gridd.conf FeatureType and nothing else, whole numbers and booleans that are what they say, and a schema that names
the keys the stacks use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from gpufleet.catalog.licensing import FEATURE_TYPES
from gpufleet.errors import SpecError
from gpufleet.spec.schema import stack_schema
from gpufleet.spec.stack import parse_stack

ROOT = Path(__file__).resolve().parents[2]
LAB = YAML(typ="safe").load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())


def _issues(change: Any) -> list[tuple[str, str]]:
    document = YAML(typ="safe").load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())
    change(document["config"]["gpufleet:fleet"])
    with pytest.raises(SpecError) as err:
        parse_stack(document, name="t")
    return [(i.path, i.message) for i in err.value.issues]


def test_driver_version_must_be_a_version() -> None:
    [(path, message)] = _issues(lambda f: f["driver"].update(version="latest"))
    assert path == "driver.version" and "'latest' is not a driver version" in message and "550.90.05" in message


def test_driver_version_must_match_the_bundle_name() -> None:
    [(path, message)] = _issues(lambda f: f["driver"].update(version="535.183.06"))
    assert path == "driver"
    assert (
        "535.183.06 does not match the bundle NVD-AIE-800_550.90.05-1OEM" in message and "carries 550.90.05" in message
    )


@pytest.mark.parametrize("value", [3, 5, -1])
def test_feature_type_is_one_of_the_documented_ones(value: int) -> None:
    [(path, message)] = _issues(lambda f: f["licensing"].update(featureType=value))
    assert path == "licensing.featureType"
    assert f"{value} is not a gridd.conf FeatureType" in message
    assert all(f"{k} ({v})" in message for k, v in FEATURE_TYPES.items())


@pytest.mark.parametrize("value", [True, "8", 8.5])
def test_whole_numbers_are_whole_numbers(value: Any) -> None:
    [(path, _message)] = _issues(lambda f: f["templates"][0].update(cpus=value))
    assert path == "templates[tpl-ubuntu2204-gpu].cpus"


def test_a_float_that_is_a_whole_number_passes_as_pulumi_sends_numbers() -> None:
    document = YAML(typ="safe").load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())
    document["config"]["gpufleet:fleet"]["templates"][0]["cpus"] = 8.0
    assert parse_stack(document, name="t").fleet.templates[0].cpus == 8


def test_booleans_are_booleans() -> None:
    [(path, _message)] = _issues(lambda f: f["hosts"][1]["nics"][0].update(ats="yes"))
    assert path == "hosts[esxi-02.lab].nics[0].ats"


def _keys_in_schema(value: Any, schema: dict[str, Any], defs: dict[str, Any], where: str) -> list[str]:
    """Keys of ``value`` that ``schema`` does not name (following $ref, anyOf and arrays)."""
    if "$ref" in schema:
        return _keys_in_schema(value, defs[schema["$ref"].rsplit("/", 1)[-1]], defs, where)
    for option in schema.get("anyOf", []):
        if option.get("type") != "null" and ("$ref" in option or "properties" in option or "items" in option):
            return _keys_in_schema(value, option, defs, where)
    missing: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                missing.append(f"{where}.{key}")
            else:
                missing += _keys_in_schema(item, schema["properties"][key], defs, f"{where}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            missing += _keys_in_schema(item, schema["items"], defs, f"{where}[{i}]")
    return missing


@pytest.mark.parametrize("path", sorted((ROOT / "stacks").glob("Pulumi.*.yaml")), ids=lambda p: p.name)
def test_the_schema_names_every_key_the_stacks_use(path: Path) -> None:
    schema = stack_schema()
    defs = schema["$defs"]
    fleet = YAML(typ="safe").load(path.read_text())["config"]["gpufleet:fleet"]
    assert _keys_in_schema(fleet, {"$ref": "#/$defs/Fleet"}, defs, "gpufleet:fleet") == []
    assert "p2p" in defs["TemplateSpec"]["properties"] and "p2P" not in defs["TemplateSpec"]["properties"]
