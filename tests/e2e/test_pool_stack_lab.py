"""The GPU pool stack (``stacks/Pulumi.lab-bitfusion.yaml``: two Bitfusion servers on esxi-04.lab exporting its four
T4s, three clients on esxi-03.lab) deployed on a lab of its own, first through the CLI verbs, then through the real
engine, in order (one module: ``--dist loadscope`` runs it on one worker):

- CLI: validate, plan (occupancy), ``hosts prepare``, ``vms apply``, ``guests prepare`` (the clients' Bitfusion
  configuration), ``verify`` green with the Bitfusion checks passing on every client; a rerun changes nothing
  and ``audit`` finds the fleet in sync;
  ``plan --migrate-pool`` gives the vGPU diff (and refuses MIG on T4s).
- Engine (on the lab started again, fresh): ``gpufleet pulumi up`` converges (a ``BitfusionClientConfig`` per
  client), ``verify`` green, a second ``up`` changes nothing; a client token removed behind Pulumi's back turns
  that client's checks red, ``refresh`` sees it and ``up`` puts it back.

Its own lab because the pool stack passes esxi-04.lab's T4s through to the server VMs, which the main lab stack
(and the tests sharing the session lab) do not expect: ``$GPUFLEET_POOL_LAB_DIR`` (default
``/tmp/gpufleet-pool-lab``), SSH port ``$GPUFLEET_POOL_LAB_SSH_PORT`` (3622), vCenter port
``$GPUFLEET_POOL_LAB_VCENTER_PORT`` (20443). The pool's CA and client token (the running lab's) must appear in no
output of any command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from own_lab import OwnLab, engine_built, own_lab

from gpufleet.connections import read_lab_env

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STACK = "stacks/Pulumi.lab-bitfusion.yaml"
CLIENTS = ["bf-client-01", "bf-client-02", "bf-client-03"]
SERVERS = ["bf-server-01", "bf-server-02"]
BITFUSION_CHECKS = [
    "test_bitfusion_client_sees_the_pool",
    "test_bitfusion_health_passes",
    "test_bitfusion_fractional_run_sees_a_gpu",
    "test_bitfusion_data_path_is_the_declared_one",
]
CLIENT_FILES = ["/etc/bitfusion/servers.conf", "/etc/bitfusion/tls/ca.crt", "/root/.bitfusion/client.yaml"]
SECRET_NAMES = ("GPUFLEET_BITFUSION_CA", "GPUFLEET_BITFUSION_TOKEN")


def _secret_pieces(value: str) -> list[str]:
    """The secret whole, each line of it that says something (the CA's body), and a middle slice."""
    lines = [line for line in value.splitlines() if len(line) >= 12 and "-----" not in line]
    middle = value.strip()[len(value.strip()) // 3 :][:16]
    return [value, *lines, middle]


@dataclass
class PoolLab:
    lab: OwnLab
    env: dict[str, str]

    def secrets(self) -> dict[str, str]:
        document = read_lab_env(self.lab.dir)["secrets"]
        return {name: document[name] for name in SECRET_NAMES}

    def gpufleet(self, *args: str) -> subprocess.CompletedProcess:
        """``gpufleet ARGS`` as a user runs it; fails the test at once if the pool's CA or token is in its output."""
        argv = [sys.executable, "-m", "gpufleet", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=self.env, cwd=ROOT)
        output = done.stdout + done.stderr
        for name, value in self.secrets().items():
            leaked = [p for p in _secret_pieces(value) if p in output]
            assert not leaked, f"gpufleet {' '.join(args)}: {name} (or a piece of it) is in the output"
        return done

    def json(self, *args: str, codes: tuple[int, ...] = (0,)) -> dict[str, Any]:
        done = self.gpufleet(*args, "--json")
        assert done.returncode in codes, f"{' '.join(args)}: exit {done.returncode}\n{done.stdout[-4000:]}{done.stderr}"
        return json.loads(done.stdout)

    def ok(self, *args: str) -> str:
        done = self.gpufleet(*args)
        assert done.returncode == 0, f"{' '.join(args)}: exit {done.returncode}\n{done.stdout[-4000:]}{done.stderr}"
        return done.stdout

    def restart(self) -> None:
        """The lab as `lab up` makes it: VMs without GPUs, hosts without the driver, new CA and token."""
        self.lab.restart()

    def guest(self, vm: str, command: str) -> subprocess.CompletedProcess:
        """A command on a lab guest over SSH (pinned host key), as an operator would run it behind gpufleet's back."""
        entry = next(g for g in read_lab_env(self.lab.dir)["guests"] if g["name"] == vm)
        argv = ["ssh", "-i", entry["key_file"], "-o", f"UserKnownHostsFile={entry['known_hosts']}"]
        argv += ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p", str(entry["port"])]
        return subprocess.run([*argv, f"root@{entry['address']}", command], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def pool_lab() -> Iterator[PoolLab]:
    with own_lab("POOL", "/tmp/gpufleet-pool-lab", 3622, 20443) as lab:
        env = lab.environ(NO_COLOR="1")
        for name in SECRET_NAMES:
            env.pop(name, None)  # the running lab's generated values
        yield PoolLab(lab, env)


def _checks(report: dict[str, Any], node: str) -> dict[str, tuple[str, str]]:
    return {c["check"]: (c["outcome"], c["message"]) for c in report["checks"] if c["node"] == node}


def _assert_pool_green(lab: PoolLab) -> dict[str, Any]:
    """verify exit 0, and on every client the Bitfusion checks passed (the data path skipped only for vmxnet3)."""
    report = lab.json("verify", STACK)
    assert report["summary"]["failed"] == report["summary"]["error"] == 0
    for client in CLIENTS:
        outcomes = _checks(report, client)
        for check in BITFUSION_CHECKS:
            outcome, message = outcomes[check]
            if client == "bf-client-03" and check == "test_bitfusion_data_path_is_the_declared_one":
                assert (outcome, "over vmxnet3 (TCP)" in message) == ("skipped", True), message
            else:
                assert outcome == "passed", f"{client} {check}: {outcome} {message}"
    for server in SERVERS:  # the servers really hold their T4s
        assert _checks(report, server)["test_nvidia_smi_sees_every_gpu_of_the_vm"][0] == "passed"
    return report


# -- the CLI path ---------------------------------------------------------------------------------------------------


def test_the_pool_stack_validates_and_plans_its_occupancy(pool_lab: PoolLab) -> None:
    assert "valid:" in pool_lab.ok("validate", STACK)
    plan = pool_lab.json("plan", STACK)
    (pool,) = plan["pools"]
    assert (pool["name"], pool["feasible"], pool["gpusTotal"], pool["allocated"]) == ("bf-pool", True, 4, "1.75")
    placed = {c["vm"]: c["gpus"] for c in pool["clients"]}
    assert sorted(placed) == CLIENTS and pool["unplaced"] == []
    # the quarter and the half share one T4 (best fit), the whole GPU has one to itself
    assert placed["bf-client-01"] == placed["bf-client-02"] != placed["bf-client-03"]


def test_before_deploy_the_clients_cannot_reach_the_pool(pool_lab: PoolLab) -> None:
    """The Bitfusion checks can fail: a fresh client has no configuration and its servers no GPUs."""
    done = pool_lab.gpufleet("verify", STACK, "--node", "bf-client-01", "--json")
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr  # 2: a check failed
    outcomes = _checks(json.loads(done.stdout), "bf-client-01")
    assert outcomes["test_bitfusion_client_sees_the_pool"][0] == "failed"


def test_the_cli_deploys_the_pool_and_verify_is_green(pool_lab: PoolLab) -> None:
    hosts = pool_lab.json("hosts", "prepare", STACK)
    assert sorted(h["name"] for h in hosts["hosts"]) == ["esxi-03.lab", "esxi-04.lab"]
    assert [h["name"] for h in hosts["hosts"] if h.get("error")] == []
    vms = pool_lab.json("vms", "apply", STACK)
    changes = {v["name"]: v["changes"] for v in vms["vms"]}
    assert [c for c in changes["bf-server-01"] if "directpath" in c] == [
        "add directpath 0000:3b:00.0",
        "add directpath 0000:5e:00.0",
    ]
    assert any("pvrdma" in c for c in changes["bf-client-01"]) and not changes["bf-client-03"]
    guests = pool_lab.json("guests", "prepare", STACK)
    configured = {c["vm"]: c for c in guests["poolClients"]}
    assert sorted(configured) == CLIENTS
    for client in configured.values():
        assert client["changed"] is True and client["pool"] == "bf-pool"
        assert [(f["path"], f["state"]) for f in client["files"]] == [(p, "written") for p in CLIENT_FILES]
    _assert_pool_green(pool_lab)


def test_a_rerun_changes_nothing(pool_lab: PoolLab) -> None:
    hosts = pool_lab.json("hosts", "prepare", STACK, "--dry-run")  # exit 0: nothing pending
    assert [(h["name"], s["name"]) for h in hosts["hosts"] for s in h["steps"] if s["state"] != "ok"] == []
    vms = pool_lab.json("vms", "apply", STACK)
    assert [v["name"] for v in vms["vms"] if v["changed"]] == []
    guests = pool_lab.json("guests", "prepare", STACK)
    for client in guests["poolClients"]:
        assert client["changed"] is False
        assert {f["state"] for f in client["files"]} == {"ok"}, client
    text = pool_lab.ok("guests", "prepare", STACK, "--dry-run")  # exit 0: nothing pending
    assert [line for line in text.splitlines() if "Bitfusion client of pool" in line] == [
        f"{c}: Bitfusion client of pool bf-pool as wanted" for c in CLIENTS
    ]
    assert "0 guest(s)" not in text  # no empty table of GPU guests for a stack whose guests are pool clients only
    audit = pool_lab.json("audit", STACK)  # exit 0: the T4 host's missing nvidia-smi is no drift (no driver wanted)
    assert (audit["status"], audit["findings"]) == ("in-sync", [])


def test_migrate_pool_proposes_the_vgpu_profiles_as_a_stack_diff(pool_lab: PoolLab) -> None:
    plan = pool_lab.json("plan", STACK, "--migrate-pool", "bf-pool")
    assert plan["feasible"] is True and plan["removedVms"] == SERVERS
    profiles = {c["vm"]: (c["profiles"], c["host"]) for c in plan["clients"]}
    assert profiles == {
        "bf-client-01": (["grid_t4-4c"], "esxi-04.lab"),  # a quarter of a 16 GB T4
        "bf-client-02": (["grid_t4-8c"], "esxi-04.lab"),
        "bf-client-03": (["grid_t4-16c"], "esxi-04.lab"),
    }
    diff = plan["diff"]
    assert "-      mode: passthrough\n+      mode: vgpu" in diff and "+    - profile: grid_t4-4c" in diff
    assert "-  gpuPools:" in diff and "-  - name: bf-server-01" in diff
    mig = pool_lab.json("plan", STACK, "--migrate-pool", "bf-pool", "--to", "mig", codes=(2,))
    assert mig["feasible"] is False
    assert {c["reason"] for c in mig["clients"]} == {"T4 has no MIG mode (try --to vgpu)"}


# -- the same stack through the real engine -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool_engine(pool_lab: PoolLab, tmp_path_factory: pytest.TempPathFactory) -> PoolLab:
    """The lab fresh again (nothing deployed), an engine state of its own, the stack initialised."""
    engine_built()
    pool_lab.restart()
    pool_lab.env["GPUFLEET_ENGINE_STATE"] = str(tmp_path_factory.mktemp("pool-engine-state"))
    pool_lab.ok("pulumi", "stack", "init", "lab-bitfusion")
    return pool_lab


def _up(lab: PoolLab, *extra: str) -> dict[str, Any]:
    lab.ok("pulumi", "up", "--stack", "lab-bitfusion", "--yes", *extra)
    return json.loads(lab.ok("pulumi", "stack", "output", "--stack", "lab-bitfusion", "--json"))


@pytest.mark.engine
def test_pulumi_up_converges_the_pool_and_verify_is_green(pool_engine: PoolLab) -> None:
    outputs = _up(pool_engine)
    clients = outputs["bitfusionClients"]
    assert sorted(clients) == CLIENTS
    for client in clients.values():
        assert (client["pool"], client["state"], client["changed"]) == ("bf-pool", "configured", True)
        assert [(f["path"], f["state"]) for f in client["files"]] == [(p, "written") for p in CLIENT_FILES]
    assert outputs["vms"]["bf-server-02"]["lastChanges"][:2] == [
        "add directpath 0000:86:00.0",
        "add directpath 0000:af:00.0",
    ]
    _assert_pool_green(pool_engine)


@pytest.mark.engine
def test_a_second_pulumi_up_changes_nothing(pool_engine: PoolLab) -> None:
    _up(pool_engine, "--expect-no-changes")


@pytest.mark.engine
def test_a_removed_client_token_is_seen_by_refresh_and_put_back_by_up(pool_engine: PoolLab) -> None:
    removed = pool_engine.guest("bf-client-01", "rm /root/.bitfusion/client.yaml")
    assert removed.returncode == 0, removed.stderr
    done = pool_engine.gpufleet("verify", STACK, "--node", "bf-client-01", "--json")
    assert done.returncode == 2  # a check failed
    assert _checks(json.loads(done.stdout), "bf-client-01")["test_bitfusion_client_sees_the_pool"][0] == "failed"
    pool_engine.ok("pulumi", "refresh", "--stack", "lab-bitfusion", "--yes")
    preview = json.loads(pool_engine.ok("pulumi", "preview", "--stack", "lab-bitfusion", "--json"))
    updates = [s["urn"].rsplit("::", 1)[-1] for s in preview["steps"] if s["op"] == "update"]
    assert updates == ["bf-client-01-bitfusion"]
    outputs = _up(pool_engine)
    files = {f["path"]: f["state"] for f in outputs["bitfusionClients"]["bf-client-01"]["files"]}
    assert files == {CLIENT_FILES[0]: "ok", CLIENT_FILES[1]: "ok", CLIENT_FILES[2]: "written"}
    assert pool_engine.gpufleet("guests", "prepare", STACK, "--dry-run").returncode == 0  # all as wanted


@pytest.mark.engine
def test_the_engine_state_holds_no_plain_ca_or_token(pool_engine: PoolLab) -> None:
    exported = pool_engine.ok("pulumi", "stack", "export", "--stack", "lab-bitfusion")
    state_files = [p for p in Path(pool_engine.env["GPUFLEET_ENGINE_STATE"]).rglob("*") if p.is_file()]
    assert state_files
    for name, value in pool_engine.secrets().items():
        for piece in _secret_pieces(value):
            assert piece not in exported, name
            assert not [p for p in state_files if piece in p.read_text(errors="ignore")], name
