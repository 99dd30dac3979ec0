"""The lab's guest personas (lab/guest) without sshd: the shell subset, nvidia-smi outputs against the real
captures, what vCenter's VM view turns into, nvidia-gridd, and the lab wiring (units, token, reset)."""

from __future__ import annotations

import io
import json
import stat
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest

from gpufleet.readers import guest_smi
from gpufleet.readers.nvidia_smi import parse_query_xml
from lab.guest.commands import Guest, run_line
from lab.guest.shell import ShellSyntaxError, parse, tokenize
from lab.guest.vcenter_devices import devices_from_vm_view

H100_SXM = [{"kind": "passthrough", "model": "H100-80GB-SXM"}]


def sh(directory: Path, line: str, stdin: bytes = b"") -> tuple[int, str, str]:
    rc, out, err = run_line(Guest(directory), line, stdin=io.BytesIO(stdin))
    return rc, out.decode(), err.decode()


def _reference(name: str) -> list[str]:
    text = resources.files("lab.guest").joinpath("data", name).read_text()
    return [line for line in text.split("\n") if not line.startswith("# Provenance:")]


def _without_timestamp(lines: list[str]) -> list[str]:
    return [
        line
        for line in lines
        if "Timestamp" not in line
        and "<timestamp>" not in line
        and not line.startswith(("Mon ", "Tue ", "Wed ", "Thu ", "Fri ", "Sat ", "Sun "))
    ]


# ---------------------------------------------------------------- shell
def test_tokenizer_and_parser() -> None:
    assert tokenize('echo \'a b\' "c\\"d" e\\ f 2>/dev/null') == [
        ("word", "echo"),
        ("word", "a b"),
        ("word", 'c"d'),
        ("word", "e f"),
        ("op", "2>"),
        ("word", "/dev/null"),
    ]
    program = parse("a && b | c; d || e")
    assert [(conn, [c.argv[0] for c in pipe]) for conn, pipe in program] == [
        ("", ["a"]),
        ("&&", ["b", "c"]),
        (";", ["d"]),
        ("||", ["e"]),
    ]
    for bad in ("echo $(id)", "echo `id`", "a &&", "| a", "sleep 1 &", "echo 'open"):
        with pytest.raises(ShellSyntaxError):
            parse(bad)


def test_shell_runs_what_ssh_clients_send(make_guest: Callable[..., Path]) -> None:
    d = make_guest("vm-ts-01")
    assert sh(d, "frobnicate --now") == (127, "", "bash: line 1: frobnicate: command not found\n")
    assert sh(d, "false || echo yes; true && echo also")[1] == "yes\nalso\n"
    assert sh(d, "sh -c 'uname -m && getconf LONG_BIT'")[1] == "x86_64\n64\n"
    # stdin reaches the first command that reads it, even after others in the same line
    assert sh(d, "umask 077; mkdir -p /tmp/x && cat > /tmp/x/f && stat -c '%a' /tmp/x/f", b"secret") == (0, "600\n", "")
    assert sh(d, "cat /tmp/x/f | wc -l; cat < /tmp/x/f")[1] == "0\nsecret"
    assert sh(d, "cat /nope 2>&1")[1] == "cat: /nope: No such file or directory\n"
    assert sh(d, "echo $(id)")[0] == 2
    assert sh(d, "stat -Lc %a /etc/nvidia/gridd.conf.template")[1] == "644\n"
    assert sh(d, "test -d /run/systemd/system && command -v systemctl")[1] == "/usr/bin/systemctl\n"


def test_no_path_escapes_the_guest_root(make_guest: Callable[..., Path]) -> None:
    d = make_guest("vm-ts-01")
    assert sh(d, "cat /../../../../etc/hostname")[0] == 1
    assert sh(d, "echo x > /proc/driver/nvidia/version")[2].endswith("Read-only file system\n")


# ---------------------------------------------------------------- nvidia-smi against the real captures
IDENTITY = (
    "00000000:00:06.0",
    "pci_bus>",
    "pci_device>",
    "pci_bus_id>",
    "<gpu id=",
    "<uuid>",
    "Bus  ",
    "Device  ",
    "Bus Id",
    "GPU UUID",
    "GPU 0000",
    "| 0000",
)


def _differences(ours: str, reference: list[str]) -> list[tuple[str, str]]:
    mine = _without_timestamp(ours.split("\n"))
    theirs = _without_timestamp(reference)
    assert len(mine) == len(theirs)
    return [(a, b) for a, b in zip(mine, theirs, strict=True) if a != b]


def test_passthrough_h100_outputs_are_the_real_ones(make_guest: Callable[..., Path]) -> None:
    """The lab's H100 guest prints the real captures line for line; only its own bus id and UUID differ."""
    d = make_guest("vm-pt-01", static_gpus=H100_SXM, driver={"installed": True, "version": "580.159.04"})
    for command, reference in (
        ("nvidia-smi -q -x", "h100_q_x.xml"),
        ("nvidia-smi -q", "h100_q.txt"),
        ("nvidia-smi", "h100_default.txt"),
    ):
        differences = _differences(sh(d, command)[1], _reference(reference))
        assert differences, command  # the identity does differ...
        for ours, theirs in differences:  # ...and nothing else
            assert any(key in theirs for key in IDENTITY) or "35C" in theirs, (command, ours, theirs)
    assert sh(d, "nvidia-smi -q -d LICENSE") == (2, "Failed to parse --display/-d flags\n", "")  # as on the real H100
    assert sh(d, "nvidia-smi --query-gpu=name,virtualization_mode --format=csv")[:2] == (
        2,
        'Field "virtualization_mode" is not a valid field to query.\n\n',
    )


def test_vgpu_views_parse_like_real_ones(make_guest: Callable[..., Path]) -> None:
    d = make_guest("vm-mig-01")
    xml = sh(d, "nvidia-smi -q -x")[1]
    (gpu,) = guest_smi.parse_guest_xml(xml).gpus
    assert (gpu.product_name, gpu.virtualization_mode, gpu.mig_current, gpu.mig_devices) == (
        "GRID A100D-3-40C",
        "VGPU",
        "Enabled",
        1,
    )
    assert (
        gpu.licensed_product == "NVIDIA Virtual Compute Server"
        and gpu.license
        and gpu.license.raw == "Unlicensed (Unrestricted)"
    )
    assert parse_query_xml(xml).gpus[0].name == "GRID A100D-3-40C"  # host_setup's reader reads it too
    text = sh(d, "nvidia-smi -q")[1]
    assert guest_smi.parse_license_block(text)[0][1].raw == "Unlicensed (Unrestricted)"
    assert (
        "    vGPU Software Licensed Product\n        Product Name                      : NVIDIA Virtual Compute Server\n"
        in text
    )
    assert guest_smi.parse_list(sh(d, "nvidia-smi -L")[1])[0].mig_devices == ("3g.40gb",)
    assert (
        sh(d, "nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits")[1]
        == "0, GRID A100D-3-40C, 40960\n"
    )
    assert sh(d, "nvidia-smi --bogus")[0] == 2


def test_no_gpu_attached_and_no_driver(make_guest: Callable[..., Path]) -> None:
    d = make_guest("vm-ts-01", static_gpus=[])
    rc, out, _ = sh(d, "nvidia-smi")
    assert rc == 9 and "couldn't communicate with the NVIDIA driver" in out
    assert "nvidia" not in sh(d, "lsmod")[1] and sh(d, "cat /proc/driver/nvidia/version")[0] == 1
    d = make_guest("vm-ts-01", driver={"installed": False})
    assert sh(d, "nvidia-smi -L")[0] == 127 and sh(d, "command -v nvidia-smi")[0] == 1


# ---------------------------------------------------------------- vCenter's view of the VM
def test_devices_from_the_vcenter_vm_view() -> None:
    view = {
        "vgpus": ["grid_h100-3-40c"],
        "passthrough": [
            {"id": "0000:5e:00.0", "vendorId": 0x10DE, "deviceId": 0x2331, "dynamic": False},
            {"id": "0000:98:00.0", "vendorId": 0x15B3, "deviceId": 0x101D, "dynamic": False},
        ],
        "nics": [{"type": "vmxnet3", "deviceProtocol": ""}, {"type": "vmxnet3vrdma", "deviceProtocol": "rocev1"}],
    }
    gpus, rdma = devices_from_vm_view(view)
    assert gpus == [
        {"kind": "vgpu", "profile": "grid_h100-3-40c"},
        {"kind": "passthrough", "model": "H100-80GB-PCIe", "host_pci": "0000:5e:00.0"},
    ]
    assert rdma == [{"type": "passthrough", "roce": "v2", "host_pci": "0000:98:00.0"}, {"type": "pvrdma", "roce": "v1"}]


# ---------------------------------------------------------------- nvidia-gridd
def test_gridd_without_a_token_stays_unlicensed(make_guest: Callable[..., Path]) -> None:
    d = make_guest("vm-ts-01")
    assert sh(d, "echo FeatureType=1 > /etc/nvidia/gridd.conf && systemctl restart nvidia-gridd")[0] == 0
    journal = sh(d, "journalctl -u nvidia-gridd --no-pager")[1]
    assert "Unable to fetch the client configuration token file" in journal
    assert "License Status                    : Unlicensed (Unrestricted)" in sh(d, "nvidia-smi -q -d LICENSE")[1]
    assert sh(d, "systemctl stop nvidia-gridd; systemctl is-active nvidia-gridd") == (3, "inactive\n", "")
    assert sh(d, "systemctl restart frob")[0] == 5


# ---------------------------------------------------------------- lab wiring
def test_prepare_guests_and_reset(tmp_path: Path) -> None:
    from lab.guest.units import TOKEN_ENV, known_hosts_lines, prepare_guests, reset_guest
    from lab.paths import LabPaths
    from lab.topology import BITFUSION_VMS, build_topology

    paths = LabPaths.resolve(tmp_path / "lab")
    setup = prepare_guests(paths, build_topology(), port=2299)
    assert [u.name for u in setup.units][:4] == ["vm-ts-01", "vm-mig-01", "vm-pt-01", "vm-rdma-01"]
    assert [u.name for u in setup.units][4:] == [vm for vm, _, _ in BITFUSION_VMS]  # the Bitfusion pool's members
    unit = setup.units[0]
    assert (
        unit.module == "lab.guest.shell"
        and unit.address == "127.0.100.11"
        and unit.env["GPUFLEET_GUEST_DIR"].endswith("vm-ts-01")
    )
    assert "ForceCommand" in unit.config_path.read_text()
    token_file = paths.guests_dir / "client_configuration_token.tok"
    assert (
        stat.S_IMODE(token_file.stat().st_mode) == 0o600 and setup.secrets[TOKEN_ENV] == token_file.read_text().strip()
    )
    assert {e["persona"] for e in setup.env_entries} == {
        "vgpu-timesliced",
        "vgpu-mig",
        "passthrough-h100",
        "rdma",
        "bitfusion-server",
        "bitfusion-client",
    }
    assert known_hosts_lines(setup)[0].startswith("[127.0.100.11]:2299 ssh-ed25519 ")
    again = prepare_guests(paths, build_topology(), port=2299)  # idempotent: same token, same host keys
    assert again.secrets == setup.secrets and again.host_keys == setup.host_keys
    guest_dir = paths.guests_dir / "vm-ts-01"
    (guest_dir / "root/etc/nvidia/gridd.conf").write_text("FeatureType=4\n")
    reset_guest(paths, "vm-ts-01")
    assert not (guest_dir / "root/etc/nvidia/gridd.conf").exists()
    assert json.loads((guest_dir / "state.json").read_text())["gpu_source"] == "vcenter"
