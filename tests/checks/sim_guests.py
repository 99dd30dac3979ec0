"""Fixtures of the simulated guests (a pytest plugin module, imported by tests/checks/conftest.py and
tests/licensing/conftest.py): guest personas run in-process (the lab's guest command simulator behind a
testinfra backend, no sshd), and nodes built from the lab stack's expectations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from guest_sim import SimRunner, sim_host

from gpufleet.checks.expect import guest_expect
from gpufleet.checks.nodes import Node
from gpufleet.spec.stack import Stack, load_stack
from lab.guest.state import GuestState, initial_state
from lab.guest.units import token_sha256

REPO = Path(__file__).resolve().parents[2]
LAB_STACK = REPO / "stacks" / "Pulumi.lab.yaml"
LAB_TOKEN = "eyJhbGciOiJSUzI1NiJ9.unit-test-token.c2lnbmF0dXJl"
PERSONAS = {
    "vm-ts-01": "vgpu-timesliced",
    "vm-mig-01": "vgpu-mig",
    "vm-pt-01": "passthrough-h100",
    "vm-rdma-01": "rdma",
}


@pytest.fixture(scope="session")
def lab_stack() -> Stack:
    return load_stack(LAB_STACK)


@pytest.fixture
def make_guest(tmp_path: Path) -> Callable[..., Path]:
    """Create a persona's state directory (static devices, fast licence) and return it."""

    made: list[Path] = []

    def make(name: str = "vm-ts-01", persona: str | None = None, **changes: object) -> Path:
        directory = tmp_path / f"{name}-{len(made)}"
        made.append(directory)
        state = initial_state(name, persona or PERSONAS[name], None, token_sha256(LAB_TOKEN), "static")
        state["license_delay_s"] = 0.05
        state.update(changes)
        GuestState.create(directory, state)
        return directory

    return make


@pytest.fixture
def sim_node(make_guest: Callable[..., Path], lab_stack: Stack) -> Callable[..., tuple[Node, Path]]:
    """A guest Node of the lab stack whose commands run in a simulated persona."""

    def make(name: str = "vm-ts-01", stack: Stack | None = None, **changes: object) -> tuple[Node, Path]:
        stack = stack or lab_stack
        directory = make_guest(name, **changes)
        vm = next(v for v in stack.fleet.vms if v.name == name)
        node = Node(name=name, kind="guest", expect=guest_expect(stack.fleet, vm))
        node._host = sim_host(directory)
        return node, directory

    return make


def update_state(directory: Path, **changes: object) -> None:
    with GuestState(directory).update() as state:
        state.update(changes)


@pytest.fixture
def license_guest() -> Callable[..., None]:
    """License a simulated guest with the lab token (the licensing step, through SimRunner)."""
    from gpufleet.connections import Secret
    from gpufleet.licensing.guest import apply_licensing

    def run(name: str, directory: Path, feature_type: int = 1) -> None:
        apply_licensing(SimRunner(name, directory), Secret(LAB_TOKEN), feature_type, poll=0.02, timeout=5)

    return run


@pytest.fixture
def sim_runner() -> type[SimRunner]:
    return SimRunner


@pytest.fixture
def lab_token() -> str:
    return LAB_TOKEN


@pytest.fixture
def bare_node(make_guest: Callable[..., Path]) -> Callable[[str], Node]:
    """A node with no stack expectations (as with testinfra's --hosts alone) on a simulated persona."""

    def make(name: str = "vm-ts-01") -> Node:
        node = Node(name="bare", kind="any")
        node._host = sim_host(make_guest(name))
        return node

    return make


@pytest.fixture
def fresh_node() -> Callable[[Node, Path], Node]:
    """The same guest as a new Node (facts are read once per node; a new run reads them again)."""

    def make(node: Node, directory: Path) -> Node:
        again = Node(name=node.name, kind=node.kind, expect=node.expect, desired=node.desired)
        again._host = sim_host(directory)
        return again

    return make
