"""GPU pools (vSphere Bitfusion): the lab stack with two servers and three clients validates and plans; bad pools
are refused naming the field; the fractional planner is exact; --migrate-pool proposes the vGPUs instead."""

from __future__ import annotations

import copy
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from gpufleet.cli.main import app
from gpufleet.placement.pool import plan_pool
from gpufleet.spec.models import Fleet

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stacks" / "Pulumi.lab-bitfusion.yaml"
runner = CliRunner()


def fleet_doc() -> dict[str, Any]:
    return copy.deepcopy(YAML(typ="safe").load(STACK.read_text())["config"]["gpufleet:fleet"])


def write(tmp_path: Path, fleet: dict[str, Any]) -> str:
    path = tmp_path / "Pulumi.pool.yaml"
    YAML(typ="safe").dump({"config": {"gpufleet:fleet": fleet, "gpufleet:vcenter": {"lab": True}}}, path)
    return str(path)


def run(*args: str) -> tuple[int, Any]:
    result = runner.invoke(app, list(args))
    return result.exit_code, json.loads(result.stdout)


def pool(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["gpuPools"][0]


def vm(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in doc["vms"] if v["name"] == name)


def test_the_bitfusion_lab_stack_validates_and_plans_its_pool() -> None:
    code, doc = run("validate", str(STACK), "--json")
    assert (code, doc["issues"]) == (0, [])
    code, doc = run("plan", str(STACK), "--json")
    assert code == 0
    (bf,) = doc["pools"]
    assert (bf["name"], bf["gpusTotal"], bf["allocated"], bf["feasible"]) == ("bf-pool", 4, "1.75", True)
    assert {c["vm"] for c in bf["clients"]} == {"bf-client-01", "bf-client-02", "bf-client-03"}
    shares = {c["vm"]: c["share"] for g in bf["gpus"] for c in g["clients"]}
    assert shares == {"bf-client-01": "0.25", "bf-client-02": "0.5", "bf-client-03": "1"}
    # best fit: the quarter and the half share one T4, the whole GPU takes another
    assert sorted(g["allocated"] for g in bf["gpus"]) == ["0", "0", "0.75", "1"]


def _server_gpu_vgpu(d: dict[str, Any]) -> None:
    d["hosts"][1]["gpus"][0]["mode"] = "vgpu"


def _two_servers_one_gpu(d: dict[str, Any]) -> None:
    pool(d)["servers"][1]["gpus"] = ["0000:3b:00.0"]


def _gpu_not_passed_through(d: dict[str, Any]) -> None:
    vm(d, "bf-server-01")["passthrough"] = [{"gpu": "0000:3b:00.0"}]


def _server_on_other_host(d: dict[str, Any]) -> None:
    pool(d)["servers"][0]["host"] = "esxi-03.lab"


def _client_with_gpu(d: dict[str, Any]) -> None:
    vm(d, "bf-client-01")["vgpu"] = [{"profile": "nvidia_l40s-24c"}]


def _shares_overflow(d: dict[str, Any]) -> None:
    for client, share in zip(pool(d)["clients"], (2, 2, 1), strict=True):
        client["share"] = share


def _share_above_largest_server(d: dict[str, Any]) -> None:
    pool(d)["clients"][2]["share"] = 3


def _share_text(d: dict[str, Any]) -> None:
    pool(d)["clients"][0]["share"] = "0.25"


def _share_not_whole(d: dict[str, Any]) -> None:
    pool(d)["clients"][0]["share"] = 1.5


def _roce_v1(d: dict[str, Any]) -> None:
    vm(d, "bf-client-01")["rdma"][0]["roce"] = "v1"


def _pvrdma_without_adapter(d: dict[str, Any]) -> None:
    pool(d)["clients"][2]["nic"] = "pvrdma"


def _not_routable(d: dict[str, Any]) -> None:
    pool(d)["networks"] = ["rdma-fabric"]


def _vmxnet3_without_network(d: dict[str, Any]) -> None:
    del pool(d)["clients"][2]["network"]


def _unknown_vm(d: dict[str, Any]) -> None:
    pool(d)["clients"][0]["vm"] = "bf-nope"


def _server_is_client(d: dict[str, Any]) -> None:
    pool(d)["clients"][0]["vm"] = "bf-server-01"


def _bad_version(d: dict[str, Any]) -> None:
    pool(d)["version"] = "latest"


def _unknown_nic(d: dict[str, Any]) -> None:
    pool(d)["servers"][0]["nic"] = "rdma"


@pytest.mark.parametrize(
    ("mutate", "path", "says"),
    [
        (_server_gpu_vgpu, "gpuPools[bf-pool].servers[0].gpus[0]", "a Bitfusion server exports passthrough GPUs"),
        (_two_servers_one_gpu, "gpuPools[bf-pool].servers[1].gpus[0]", "already exported by"),
        (_gpu_not_passed_through, "gpuPools[bf-pool].servers[0].gpus[1]", "is not passed through to bf-server-01"),
        (_server_on_other_host, "gpuPools[bf-pool].servers[0].host", "runs on esxi-04.lab"),
        (_client_with_gpu, "gpuPools[bf-pool].clients[0].vm", "has GPU devices of its own"),
        (_shares_overflow, "gpuPools[bf-pool].clients[2].share", "does not fit the pool: bf-client-03 needs 1 whole"),
        (_share_above_largest_server, "gpuPools[bf-pool].clients[2].share", "the largest server of pool bf-pool"),
        (_share_text, "gpuPools[bf-pool].clients[0].share", "must be a number"),
        (_share_not_whole, "gpuPools[bf-pool].clients[0].share", "above 1 a share is whole GPUs"),
        (_roce_v1, "vms[bf-client-01].rdma[0].roce", "needs RoCE v2"),
        (_pvrdma_without_adapter, "gpuPools[bf-pool].clients[2].nic", "needs a PVRDMA adapter on bf-client-03"),
        (_not_routable, "gpuPools[bf-pool].servers[0].network", "not one of pool bf-pool's routable networks"),
        (_vmxnet3_without_network, "gpuPools[bf-pool].clients[2].network", "which network carries"),
        (_unknown_vm, "gpuPools[bf-pool].clients[0].vm", "no VM named 'bf-nope'"),
        (_server_is_client, "gpuPools[bf-pool].clients[0].vm", "already a pool member at gpuPools[bf-pool].servers[0]"),
        (_bad_version, "gpuPools[bf-pool].version", "not a Bitfusion version"),
        (_unknown_nic, "gpuPools[bf-pool].servers[0].nic", "not one of the allowed values"),
    ],
)
def test_a_bad_pool_is_refused_naming_the_field(tmp_path: Path, mutate: Any, path: str, says: str) -> None:
    d = fleet_doc()
    mutate(d)
    code, doc = run("validate", write(tmp_path, d), "--json")
    assert code == 1
    found = [i for i in doc["issues"] if i["path"] == path]
    assert found, f"no issue at {path}: {doc['issues']}"
    assert any(says in i["message"] for i in found), found


def test_a_secret_written_inline_is_refused_and_not_echoed(tmp_path: Path) -> None:
    d = fleet_doc()
    pool(d)["clientToken"] = "bf-token-s3cr3t"
    result = runner.invoke(app, ["validate", write(tmp_path, d), "--json"])
    assert result.exit_code == 1
    assert "gpuPools[bf-pool].clientToken" in result.stdout and "s3cr3t" not in result.stdout


def test_plan_exits_2_when_the_shares_do_not_fit(tmp_path: Path) -> None:
    d = fleet_doc()
    _shares_overflow(d)
    code, doc = run("plan", write(tmp_path, d), "--json")
    assert code == 2
    assert [u["vm"] for u in doc["pools"][0]["unplaced"]] == ["bf-client-03"]


def _one_server_pool(shares: list[float], gpus: int = 2) -> Fleet:
    pcis = ["0000:3b:00.0", "0000:5e:00.0", "0000:86:00.0", "0000:af:00.0"][:gpus]
    return Fleet.model_validate(
        {
            "version": "v1",
            "datacenter": "DC",
            "cluster": "C",
            "hosts": [{"name": "h", "gpus": [{"pci": p, "model": "T4", "mode": "passthrough"} for p in pcis]}],
            "templates": [{"name": "t", "network": "pg"}],
            "vms": [{"name": "srv", "template": "t", "host": "h", "passthrough": [{"gpu": p} for p in pcis]}]
            + [{"name": f"c{i}", "template": "t"} for i in range(len(shares))],
            "gpuPools": [
                {
                    "name": "p",
                    "version": "4.5.4",
                    "networks": ["pg"],
                    "servers": [{"vm": "srv", "host": "h", "gpus": pcis}],
                    "clients": [{"vm": f"c{i}", "share": s} for i, s in enumerate(shares)],
                    "tls": {"ca": {"env": "CA"}},
                    "clientToken": {"env": "TOKEN"},
                }
            ],
        }
    )


def test_fractions_are_exact() -> None:
    fleet = _one_server_pool([0.1, 0.2, 0.7], gpus=1)
    result = plan_pool(fleet, fleet.gpu_pools[0])
    assert result.feasible and result.gpus[0].used == Fraction(1)


def test_the_exact_search_places_what_best_fit_leaves_out() -> None:
    # best fit decreasing puts 0.4 + 0.4 on one GPU and then has no room for the fourth 0.3; 2 x (0.4+0.3+0.3) fits
    fleet = _one_server_pool([0.4, 0.4, 0.3, 0.3, 0.3, 0.3])
    result = plan_pool(fleet, fleet.gpu_pools[0])
    assert result.feasible
    assert sorted(g.used for g in result.gpus) == [Fraction(1), Fraction(1)]


def test_migrate_pool_proposes_the_vgpus_as_a_stack_diff() -> None:
    code, doc = run("plan", str(STACK), "--migrate-pool", "bf-pool", "--json")
    assert code == 0 and doc["feasible"]
    profiles = {c["vm"]: (c["profiles"], c["host"]) for c in doc["clients"]}
    assert profiles == {
        "bf-client-01": (["grid_t4-4c"], "esxi-04.lab"),
        "bf-client-02": (["grid_t4-8c"], "esxi-04.lab"),
        "bf-client-03": (["grid_t4-16c"], "esxi-04.lab"),
    }
    assert [g["to"] for g in doc["gpus"]] == ["vgpu"] * 4 and doc["removedVms"] == ["bf-server-01", "bf-server-02"]
    diff = doc["diff"]
    assert "-      mode: passthrough\n+      mode: vgpu\n" in diff
    assert "+    - profile: grid_t4-4c\n" in diff and "-  gpuPools:\n" in diff


def test_migrate_pool_exits_2_when_it_does_not_fit_and_1_for_an_unknown_pool() -> None:
    code, doc = run("plan", str(STACK), "--migrate-pool", "bf-pool", "--to", "mig", "--json")
    assert code == 2 and not doc["feasible"]
    assert all("T4 has no MIG mode" in c["reason"] for c in doc["clients"])
    code, doc = run("plan", str(STACK), "--migrate-pool", "nope", "--json")
    assert code == 1 and doc["valid"] == ["bf-pool"]


def test_the_schema_describes_gpu_pools() -> None:
    result = runner.invoke(app, ["schema"])
    defs = json.loads(result.stdout)["$defs"]
    assert "gpuPools" in defs["Fleet"]["properties"]
    assert set(defs["GpuPool"]["required"]) >= {"name", "version", "networks", "servers", "tls", "clientToken"}
