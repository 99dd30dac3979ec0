"""vSphere Bitfusion in the guest simulator, without a lab: the server and client personas, the client configuration
placed over the GuestRunner (secrets 0600, never on a command line, a rerun changes nothing) and the verify checks
of a pool client (pool visible, health, a fractional run sees a GPU, the declared data path)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from guest_sim import SimRunner, sim_host

from gpufleet.checks import test_guests as checks
from gpufleet.checks.bitfusion import CA_FILE, CLIENT_YAML, SERVERS_CONF, client_files, configure_client
from gpufleet.checks.expect import guest_expect
from gpufleet.checks.nodes import Node
from gpufleet.connections import Secret
from gpufleet.spec.stack import load_stack
from lab.guest.commands import Guest, run_line
from lab.guest.state import GuestState, initial_state
from lab.guest.units import token_sha256

REPO = Path(__file__).resolve().parents[2]
STACK = load_stack(REPO / "stacks" / "Pulumi.lab-bitfusion.yaml")
POOL = STACK.fleet.gpu_pools[0]
CA = "-----BEGIN CERTIFICATE-----\nTUlJQ2xhYi1jYQ==\n-----END CERTIFICATE-----\n"
TOKEN = "bf-unit-test-token-s3cr3t"
SERVERS = {"bf-server-01": "127.0.100.15", "bf-server-02": "127.0.100.16"}


@pytest.fixture
def guests(tmp_path: Path) -> Path:
    """Both servers and bf-client-01 as static personas, side by side as in a lab's guests directory."""
    digests = {"token_sha256": token_sha256(TOKEN), "ca_sha256": token_sha256(CA)}
    members = [(n, "bitfusion-server", a) for n, a in SERVERS.items()] + [
        ("bf-client-01", "bitfusion-client", "127.0.100.17")
    ]
    for name, persona, address in members:
        GuestState.create(
            tmp_path / name, initial_state(name, persona, None, None, "static", address=address, bitfusion=digests)
        )
    return tmp_path


def sh(directory: Path, line: str) -> tuple[int, str, str]:
    rc, out, err = run_line(Guest(directory), line)
    return rc, out.decode(), err.decode()


def configure(guests: Path, token: str = TOKEN, dry_run: bool = False) -> tuple[SimRunner, object]:
    runner = SimRunner("bf-client-01", guests / "bf-client-01")
    files = client_files(list(SERVERS.values()), Secret(CA), Secret(token))
    return runner, configure_client(runner, POOL, files, dry_run=dry_run)


def test_an_unconfigured_client_gets_the_real_claim_error(guests: Path) -> None:
    rc, _, err = sh(guests / "bf-client-01", "bitfusion list_gpus")
    assert rc == 1 and "no servers listed in /etc/bitfusion/servers.conf" in err


def test_the_client_configuration_is_placed_once_with_secrets_0600(guests: Path) -> None:
    runner, first = configure(guests)
    assert first.changed and [s for _, s in first.files] == ["written"] * 3
    root = guests / "bf-client-01" / "root"
    modes = {p: stat.S_IMODE((root / p.lstrip("/")).stat().st_mode) for p in (SERVERS_CONF, CA_FILE, CLIENT_YAML)}
    assert modes == {SERVERS_CONF: 0o644, CA_FILE: 0o600, CLIENT_YAML: 0o600}
    assert "127.0.100.15:56001" in (root / SERVERS_CONF.lstrip("/")).read_text()
    assert not any(TOKEN in c or "TUlJQ2xhYi1jYQ" in c for c in runner.commands)  # secrets only on stdin
    _, again = configure(guests)
    assert not again.changed and [s for _, s in again.files] == ["ok"] * 3
    _, pending = configure(guests, token="bf-another-token", dry_run=True)
    assert pending.pending == [CLIENT_YAML]


def test_the_client_lists_the_pool_and_runs_on_a_quarter_gpu(guests: Path) -> None:
    configure(guests)
    rc, out, _ = sh(guests / "bf-client-01", "bitfusion list_gpus")
    assert rc == 0 and " - server 1 [127.0.100.16:56001]: running 0 tasks" in out and out.count("|- GPU") == 4
    rc, out, _ = sh(guests / "bf-client-01", "bitfusion run -n 1 -p 0.25 -- nvidia-smi -L")
    assert rc == 0 and "Locked 1 GPUs with partial memory 0.25" in out and "Requested resources:" in out
    assert out.count("GPU 0: ") == 1 and "T4" in out


def test_a_wrong_token_is_refused_by_every_server(guests: Path) -> None:
    configure(guests, token="bf-wrong")
    rc, _, err = sh(guests / "bf-client-01", "bitfusion list_gpus")
    assert rc == 1 and "Error: none of the servers responded correctly to client id claim requests." in err
    assert "401 Unauthorized" in err


def test_rdma_device_and_roce_mode_of_a_pvrdma_member(guests: Path) -> None:
    client = guests / "bf-client-01"
    rc, out, _ = sh(client, "ibv_devinfo -d vmw_pvrdma0")
    assert rc == 0 and "PORT_ACTIVE (4)" in out and "link_layer:\t\tEthernet" in out
    assert sh(client, "cma_roce_mode -d vmw_pvrdma0 -p 1")[1] == "RoCE v2\n"
    assert "\tv2\t" in sh(client, "show_gids")[1]


def _client_node(guests: Path) -> Node:
    vm = next(v for v in STACK.fleet.vms if v.name == "bf-client-01")
    node = Node(name="bf-client-01", kind="guest", expect=guest_expect(STACK.fleet, vm))
    node._host = sim_host(guests / "bf-client-01")
    return node


def test_the_verify_checks_pass_on_a_configured_client(guests: Path) -> None:
    configure(guests)
    node = _client_node(guests)
    checks.test_bitfusion_client_sees_the_pool(node)
    checks.test_bitfusion_health_passes(node)
    checks.test_bitfusion_fractional_run_sees_a_gpu(node)
    checks.test_bitfusion_data_path_is_the_declared_one(node)


def test_the_verify_checks_fail_on_an_unconfigured_client(guests: Path) -> None:
    node = _client_node(guests)
    with pytest.raises(AssertionError, match="shows 0 server"):
        checks.test_bitfusion_client_sees_the_pool(node)
    with pytest.raises(AssertionError, match="bitfusion health failed"):
        checks.test_bitfusion_health_passes(node)


def test_the_pulumi_resource_runs_the_same_configuration(guests: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from components.providers import bitfusion_client as module

    class Conns:
        def guest(self, name: str) -> str:
            return name

    runner = SimRunner("bf-client-01", guests / "bf-client-01")
    monkeypatch.setattr(module, "GuestSshRunner", lambda _settings: runner)
    monkeypatch.setattr(module.BitfusionClientConfigProvider, "connections", lambda self, v, f: Conns())
    provider = module.BitfusionClientConfigProvider()
    props = {
        "vcenter": {"lab": True},
        "vmName": "bf-client-01",
        "ssh": None,
        "pool": "bf-pool",
        "servers": list(SERVERS.values()),
        "ca": CA,
        "clientToken": TOKEN,
    }
    assert [f.property for f in provider.check({}, {**props, "servers": []}).failures] == ["servers"]
    created = provider.create(props)
    assert created.outs["state"] == "configured" and created.outs["changed"] is True
    assert provider.update(created.id, created.outs, props).outs["changed"] is False  # idempotent
    assert provider.read(created.id, created.outs).outs["state"] == "configured"
    assert not provider.diff(created.id, created.outs, props).changes
    assert provider.diff(created.id, created.outs, {**props, "clientToken": "bf-rotated"}).changes
    assert sh(guests / "bf-client-01", "bitfusion list_gpus")[0] == 0
