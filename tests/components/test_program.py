"""``__main__.py`` under Pulumi mocks: the stack config read into the spec, the fleet's components, the secrets."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime import rpc
from pulumi_mocks import GraphMocks, plain
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "NLS-TOKEN-e5-not-a-real-one"
HOST_KEY = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"


def set_stack_config(stack_file: str, secrets: dict[str, str], extra: dict[str, str] | None = None) -> None:
    config = YAML(typ="safe").load((ROOT / "stacks" / stack_file).read_text())["config"]
    values = {k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in config.items()}
    values |= secrets | (extra or {})
    pulumi.runtime.set_all_config(values, secret_keys=list(secrets))


@pytest.fixture
def lab_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lab env file (the pulumi-vsphere provider of a lab stack reads vCenter's address from it)."""
    (tmp_path / "env.json").write_text(
        json.dumps({"vcenter": {"host": "127.0.0.1", "port": 8989, "user": "u", "password": "lab-pw", "ca_file": None}})
    )
    monkeypatch.setenv("GPUFLEET_LAB_DIR", str(tmp_path))
    return tmp_path


def run_program() -> pulumi.Output:
    """Run __main__.py; an Output that resolves once every resource it built is registered."""
    program = runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
    built = program["resources"]
    children = [c for h in built.hosts.values() for c in (h.prepare, h.license) if c]
    children += [c for v in built.vms.values() for c in (v.vm, v.devices, v.guest) if c]
    children += [c for t in built.templates.values() for c in (t.vm, t.mark, t.settings) if c]
    children += [built.mobility.setting] if built.mobility else []
    if built.licensing:
        children += [c for c in (built.licensing.vcenter_license, built.licensing.host_license) if c]
        children += list(built.licensing.guests.values())
    children += list(built.pool_clients.values())
    return pulumi.Output.all(*[c.urn for c in children])


@pulumi.runtime.test
def test_lab_stack_builds_hosts_existing_vms_mobility_and_licensing(mocks: GraphMocks, lab_env_file: Path):
    set_stack_config("Pulumi.lab.yaml", {"gpufleet:nvidiaClientToken": TOKEN, "gpufleet:hostLicense": HOST_KEY})
    done = run_program()

    def check(_):
        types = [r.typ for r in mocks.resources]
        assert types.count("gpufleet:vsphere:GpuHost") == 4
        assert types.count("gpufleet:vsphere:GpuVm") == 4
        assert "vsphere:index/virtualMachine:VirtualMachine" not in types  # the lab's VMs exist: brownfield
        assert types.count("pulumi-python:dynamic/vsphere:VmGpuDevices") == 4
        # One resource per host for its whole preparation (one maintenance window), none of the legacy steps.
        assert types.count("pulumi-python:dynamic/vsphere:HostPreparation") == 4
        assert not [t for t in types if t.split(":")[-1] in ("HostDriver", "HostGraphics", "HostMigMode", "HostAts")]
        esxi02 = mocks.named("esxi-02.lab-prepare").inputs
        assert [n["pci"] for n in esxi02["host"]["nics"] if n.get("ats")] == ["0000:31:00.0"]
        assert esxi02["mayPowerOff"] == ["vm-mig-01", "vm-pt-01", "vm-rdma-01", "vm-ts-01"]  # allowPowerCycle: true
        assert types.count("pulumi-python:dynamic/vsphere:VcenterAdvancedSetting") == 1
        # The lab's template exists: its GPU settings are converged, nothing is built.
        settings = mocks.named("tpl-ubuntu2204-gpu-settings").inputs
        assert settings["template"] == "tpl-ubuntu2204-gpu" and settings["fleet"]["datacenter"] == "DC-Lab"
        assert not mocks.of_type(":VmTemplateMark")
        guests = sorted(r.inputs["vmName"] for r in mocks.of_type(":GuestNvidiaLicensing"))
        assert guests == ["vm-mig-01", "vm-rdma-01", "vm-ts-01"]  # the vGPU VMs; vm-pt-01 is passthrough
        for guest in mocks.of_type(":GuestNvidiaLicensing"):
            assert rpc.is_rpc_secret(guest.inputs["token"])  # the token stays a Pulumi secret
        # The guest side: one GuestPreparation per VM with a guest: block (vm-pt-01 has none), its driver paired.
        prepared = {r.inputs["vmName"]: r.inputs for r in mocks.of_type(":GuestPreparation")}
        assert sorted(prepared) == ["vm-mig-01", "vm-rdma-01", "vm-ts-01"]
        ts = prepared["vm-ts-01"]
        assert (ts["driverVersion"], ts["hostDriver"], ts["gpuCount"]) == ("550.90.07", "550.90.05", 1)
        assert ts["guest"]["containerToolkit"] == {"version": "1.16.2"} and ts["where"] == "vms[0].guest"
        for lic in mocks.of_type(":HostLicenseAssignment"):
            assert rpc.is_rpc_secret(lic.inputs["licenseKey"])
        assert len(mocks.of_type(":HostLicenseAssignment")) == 4  # each adds the key to vCenter as it assigns it
        # Brownfield: no pulumi-vsphere resource at all, so no vsphere provider is needed for the lab.
        assert not mocks.of_type("index/license:License")
        assert not mocks.of_type("pulumi:providers:vsphere")
        # The real providers' check accepts every dynamic resource the program built.
        assert {n: f for n, f in mocks.check_failures.items() if f} == {}
        mig = mocks.named("vm-mig-01-gpu").inputs
        assert mig["vm"]["vgpu"] == [{"profile": "grid_a100d-3-40c"}] and mig["host"]["name"] == "esxi-01.lab"

    return done.apply(check)


BF_CA = "-----BEGIN CERTIFICATE-----\nBF-CA-not-a-real-one\n-----END CERTIFICATE-----"
BF_TOKEN = "bf-token-not-a-real-one"
BF_SERVERS = {"bf-server-01": "127.0.100.15", "bf-server-02": "127.0.100.16"}


@pulumi.runtime.test
def test_pool_stack_configures_each_client_after_its_devices_with_secret_ca_and_token(
    mocks: GraphMocks, lab_env_file: Path
):
    """gpuPools: one BitfusionClientConfig per client, a child of its GpuVm after its devices, the servers' lab
    addresses in spec order, the CA and token Pulumi secrets (config keys the stack's references name)."""
    env = json.loads((lab_env_file / "env.json").read_text())
    env["guests"] = [{"name": n, "address": a, "port": 22} for n, a in BF_SERVERS.items()]
    (lab_env_file / "env.json").write_text(json.dumps(env))
    set_stack_config(
        "Pulumi.lab-bitfusion.yaml", {"gpufleet:bitfusionCa": BF_CA, "gpufleet:bitfusionClientToken": BF_TOKEN}
    )
    program = runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
    built = program["resources"]
    exported = built.exports()["bitfusionClients"]
    devices = {name: vm.devices for name, vm in built.vms.items()}
    done = pulumi.Output.all(
        *[c.urn for c in built.pool_clients.values()],
        *[d.urn for d in devices.values()],
        pulumi.Output.from_input(exported).apply(lambda e: e),
    )

    def check(values):
        clients = {r.inputs["vmName"]: r for r in mocks.of_type(":BitfusionClientConfig")}
        assert sorted(clients) == ["bf-client-01", "bf-client-02", "bf-client-03"]  # servers get none
        for name, res in clients.items():
            assert res.name == f"{name}-bitfusion"
            assert res.inputs["pool"] == "bf-pool" and res.inputs["vcenter"]["lab"] is True
            assert res.inputs["servers"] == list(BF_SERVERS.values())
            assert rpc.is_rpc_secret(res.inputs["ca"]) and rpc.is_rpc_secret(res.inputs["clientToken"])
            assert (plain(res.inputs["ca"]), plain(res.inputs["clientToken"])) == (BF_CA, BF_TOKEN)
        # After its own VM's devices (a PVRDMA adapter added may power-cycle the VM), under its GpuVm.
        urns = dict(zip(built.pool_clients, values, strict=False))
        for name, res in clients.items():
            assert res.dependencies == (mocks.named(f"{name}-gpu").urn,), name
            assert res.parent == mocks.named(name).urn and urns[name] == mocks.named(f"{name}-bitfusion").urn
        assert {n: f for n, f in mocks.check_failures.items() if f} == {}
        # Exported per client: its pool and what the provider reports (the mocks echo the inputs: state None).
        assert sorted(values[-1]) == ["bf-client-01", "bf-client-02", "bf-client-03"]
        assert all(e["pool"] == "bf-pool" for e in values[-1].values())

    return done.apply(check)


DEV_SECRETS = {"gpufleet:vcenterPassword": "pw", "gpufleet:nvidiaClientToken": TOKEN, "gpufleet:hostLicense": HOST_KEY}


def _dev_with_ca(ca: Path) -> dict[str, str]:
    """The dev stack's vCenter with a CA bundle instead of its thumbprint (pulumi-vsphere can trust only CAs)."""
    vcenter = YAML(typ="safe").load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]["gpufleet:vcenter"]
    vcenter.pop("thumbprint")
    return {"gpufleet:vcenter": json.dumps(vcenter | {"caFile": str(ca)})}


@pytest.fixture
def vcenter_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A CA bundle, and the provider environment gpufleet pulumi sets for it (SSL_CERT_FILE, empty SSL_CERT_DIR)."""
    ca = tmp_path / "vcenter-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    (tmp_path / "no-ca-dir").mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-ca-dir"))
    monkeypatch.delenv("VSPHERE_ALLOW_UNVERIFIED_SSL", raising=False)
    return ca


@pulumi.runtime.test
def test_dev_stack_is_greenfield_templates_and_clones(mocks: GraphMocks, vcenter_ca: Path):
    set_stack_config("Pulumi.dev.yaml", DEV_SECRETS, _dev_with_ca(vcenter_ca))
    done = run_program()

    def check(_):
        vms = mocks.of_type("virtualMachine:VirtualMachine")
        assert sorted(r.inputs["name"] for r in vms) == ["dev-notebook-01", "dev-notebook-02", "tpl-ubuntu2204-gpu-dev"]
        clone = next(r for r in vms if r.inputs["name"] == "dev-notebook-01").inputs
        assert clone["clone"]["templateUuid"] == "4200-tpl-ubuntu2204-gpu-dev-vm"
        assert mocks.of_type(":VmTemplateMark")
        assert all(r.inputs["ownPvrdma"] is False for r in mocks.of_type(":VmGpuDevices"))
        assert {n: f for n, f in mocks.check_failures.items() if f} == {}
        licenses = mocks.of_type("index/license:License")  # greenfield: the host key added by pulumi-vsphere
        assert licenses and all(rpc.is_rpc_secret(r.inputs["licenseKey"]) for r in licenses)
        provider = mocks.of_type("pulumi:providers:vsphere")[0].inputs
        assert provider["allowUnverifiedSsl"] == "false" and rpc.is_rpc_secret(provider["password"])

    return done.apply(check)


def test_a_thumbprint_only_stack_gets_no_pulumi_vsphere_resources(mocks: GraphMocks, vcenter_ca: Path) -> None:
    """The Go provider cannot pin a thumbprint: refused naming the field, never trusting the system CAs instead."""
    set_stack_config("Pulumi.dev.yaml", DEV_SECRETS)  # vcenter.thumbprint only
    with pytest.raises(pulumi.RunError, match=r"^vcenter\.thumbprint: .*cannot pin a thumbprint.*vcenter\.caFile"):
        run_program()
    assert not mocks.of_type("pulumi:providers:vsphere") and not mocks.of_type("virtualMachine:VirtualMachine")


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("SSL_CERT_FILE", None, "SSL_CERT_FILE: unset, so the system CAs"),
        ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt", "SSL_CERT_FILE: /etc/ssl/certs/ca-certificates.crt"),
        ("SSL_CERT_DIR", None, "SSL_CERT_DIR (unset, so /etc/ssl/certs)"),
        ("SSL_CERT_DIR", "/etc/ssl/certs", "every CA of SSL_CERT_DIR (/etc/ssl/certs)"),
        ("VSPHERE_ALLOW_UNVERIFIED_SSL", "true", "VSPHERE_ALLOW_UNVERIFIED_SSL is set"),
    ],
)
def test_the_provider_is_refused_unless_its_environment_trusts_the_stack_ca_alone(
    mocks: GraphMocks, vcenter_ca: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str | None, named: str
) -> None:
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)
    set_stack_config("Pulumi.dev.yaml", DEV_SECRETS, _dev_with_ca(vcenter_ca))
    with pytest.raises(pulumi.RunError) as caught:
        run_program()
    message = str(caught.value)
    assert named in message
    if variable != "VSPHERE_ALLOW_UNVERIFIED_SSL":
        assert message.startswith("vcenter.caFile: ") and str(vcenter_ca) in message and "gpufleet pulumi" in message
    assert not mocks.of_type("pulumi:providers:vsphere")


def test_invalid_fleet_is_one_run_error_listing_every_issue(mocks: GraphMocks) -> None:
    config = YAML(typ="safe").load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())["config"]
    fleet = config["gpufleet:fleet"]
    fleet["vms"][0]["vgpu"] = [{"profile": "nvidia_l40s-99c"}]
    fleet["vms"][1]["host"] = "esxi-99.lab"
    pulumi.runtime.set_all_config({"gpufleet:fleet": json.dumps(fleet), "gpufleet:vcenter": json.dumps({"lab": True})})
    from components.config import stack_from_config

    with pytest.raises(pulumi.RunError) as err:
        stack_from_config(name="lab")
    message = str(err.value)
    assert "vms[vm-ts-01].vgpu[0].profile" in message and "vms[vm-mig-01].host" in message


def test_rollout_lanes_keep_max_unavailable_hosts_per_cluster_in_parallel() -> None:
    from components.fleet import rollout_lanes
    from gpufleet.spec.models import Fleet

    def host(name: str, cluster: str | None = None) -> dict:
        return {"name": name, "gpus": [], **({"cluster": cluster} if cluster else {})}

    fleet = Fleet.model_validate(
        {
            "version": "v1",
            "datacenter": "DC",
            "cluster": "A",
            "rollout": {"maxUnavailable": 2},
            "hosts": [host("a1"), host("a2"), host("b1", "B"), host("a3"), host("a4"), host("b2", "B"), host("a5")],
        }
    )
    # Per cluster, host i waits for host i-2: a3 after a1, a4 after a2, a5 after a3; B's own lanes.
    assert rollout_lanes(fleet) == [[], [], [], ["a1"], ["a2"], [], ["a3"]]
    assert rollout_lanes(
        fleet.model_copy(update={"rollout": fleet.rollout.model_copy(update={"max_unavailable": 1})})
    ) == [[], ["a1"], [], ["a2"], ["a3"], ["b1"], ["a4"]]
