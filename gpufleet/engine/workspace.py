"""The Pulumi engine built from its Go modules (``make engine`` -> ``.tools/bin``), run hermetically.

``engine_environ()`` is the one place that says how ``pulumi`` runs here (``gpufleet pulumi ...``, ``scripts/pulumi``,
the demo and the end-to-end tests all use it):

- ``PULUMI_HOME`` and a local file backend (``PULUMI_BACKEND_URL=file://...``) inside the state dir
  (``$GPUFLEET_ENGINE_STATE``, default ``<repo>/.engine``): no Pulumi Cloud, nothing in ``~/.pulumi``;
- secrets encrypted with a generated passphrase kept in a 0600 file (``PULUMI_CONFIG_PASSPHRASE_FILE``), never in
  the environment or on a command line;
- no update check, no automatic plugin download (``PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION``): the language
  host and providers are the binaries in ``.tools/bin``, first on ``PATH``, then the project's ``.venv/bin`` (the
  language host runs the program with that Python).
- the trust of pulumi-vsphere (``gpufleet.engine.provider_trust``): given the stack pulumi runs on, ``SSL_CERT_FILE`` is
  the stack's vCenter CA and ``SSL_CERT_DIR`` an empty directory, so the provider the engine launches (with the
  engine's environment) trusts exactly that CA; for a stack it cannot honour (a thumbprint only, a stack that does
  not load) or no stack at all, an empty bundle: it trusts nothing. ``VSPHERE_ALLOW_UNVERIFIED_SSL`` is dropped.

``sync_workspace()`` lays out the project the engine runs: ``<state>/project/Pulumi.yaml`` is the repository's with
``main`` and the virtualenv pointing back at the repository (the program runs from there), and
``<state>/project/stacks/Pulumi.<stack>.yaml`` is each of the repository's stack files (``$GPUFLEET_STACKS_DIR``
when set: stack files kept elsewhere) plus what this machine's
engine keeps of its own: the passphrase salt (``encryptionsalt``, tied to this machine's generated passphrase) and
values set with ``pulumi config set --secret`` (encrypted). The repository's stack files stay the one source of
the configuration and are never written by the engine; stack files only in the workspace (a test's broken stack)
are left alone.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ruamel.yaml import YAML

from gpufleet.engine.provider_trust import UNVERIFIED_ENV, ProviderTrust, provider_trust
from gpufleet.errors import GpufleetError
from gpufleet.spec.stack import load_stack

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_ENV = "GPUFLEET_ENGINE_STATE"
STACKS_ENV = "GPUFLEET_STACKS_DIR"  # stack files kept elsewhere (a config repository, a pipeline's checkout)
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
VENV_BIN = REPO_ROOT / ".venv" / "bin"
VSPHERE_UNAVAILABLE = REPO_ROOT / ".tools" / "pulumi-resource-vsphere.unavailable"
ENGINE_BINARIES = ("pulumi", "pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-pulumi-python")


class EngineMissing(GpufleetError):
    """The Pulumi engine has not been built (``make engine``)."""


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(STATE_ENV) or REPO_ROOT / ".engine")


def pulumi_binary() -> Path:
    """``.tools/bin/pulumi``; EngineMissing naming the command that builds it."""
    missing = [name for name in ENGINE_BINARIES if not os.access(TOOLS_BIN / name, os.X_OK)]
    if missing:
        raise EngineMissing(
            f"the Pulumi engine is not built ({', '.join(missing)} missing in {TOOLS_BIN}): run `make engine`"
        )
    return TOOLS_BIN / "pulumi"


def vsphere_provider_unavailable() -> str | None:
    """Why ``pulumi-resource-vsphere`` could not be built here (the proxy's exact error), or None if it was."""
    if os.access(TOOLS_BIN / "pulumi-resource-vsphere", os.X_OK):
        return None
    if VSPHERE_UNAVAILABLE.is_file():
        return VSPHERE_UNAVAILABLE.read_text().strip()
    return f"pulumi-resource-vsphere is not in {TOOLS_BIN}: run `make engine`"


def passphrase_file(state: Path) -> Path:
    """The state dir's passphrase file, generated (0600) on first use."""
    path = state / "passphrase"
    if not path.is_file():
        state.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path


# Top-level keys of a stack file that belong to the machine's secrets provider, not to the repository.
SECRETS_PROVIDER_KEYS = ("secretsprovider", "encryptedkey", "encryptionsalt")


def project_dir(state: Path) -> Path:
    return state / "project"


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def _is_secure(value: object) -> bool:
    return isinstance(value, Mapping) and set(value) == {"secure"}


def sync_workspace(state: Path, repo: Path = REPO_ROOT) -> Path:
    """Write the engine's project dir from ``repo`` (see the module docstring); returns it."""
    yaml = _yaml()
    project = project_dir(state)
    (project / "stacks").mkdir(parents=True, exist_ok=True)
    with open(repo / "Pulumi.yaml") as fh:
        manifest = yaml.load(fh)
    stack_dir = stacks_dir(repo)
    manifest["main"] = str(repo)
    manifest["stackConfigDir"] = "stacks"
    manifest.setdefault("runtime", {}).setdefault("options", {})["virtualenv"] = str(repo / ".venv")
    with open(project / "Pulumi.yaml", "w") as fh:
        yaml.dump(manifest, fh)
    for source in sorted(stack_dir.glob("Pulumi.*.yaml")):
        target = project / "stacks" / source.name
        with open(source) as fh:
            merged = yaml.load(fh) or {}
        local = {}
        if target.is_file():
            with open(target) as fh:
                local = yaml.load(fh) or {}
        if not any(key in merged for key in SECRETS_PROVIDER_KEYS):
            for key in SECRETS_PROVIDER_KEYS:
                if key in local:
                    merged.insert(0, key, local[key])
        config = merged.setdefault("config", {})
        for key, value in (local.get("config") or {}).items():
            if _is_secure(value) and key not in config:
                config[key] = value
        tmp = target.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            yaml.dump(merged, fh)
        tmp.replace(target)
    return project


def engine_environ(environ: Mapping[str, str] | None = None, stack: str | None = None) -> dict[str, str]:
    """The environment ``pulumi`` runs with: ``environ`` (default ``os.environ``) plus the hermetic settings and,
    when ``stack`` is given (the ``""`` of "no stack known" included), the trust of pulumi-vsphere for it."""
    env = dict(os.environ if environ is None else environ)
    state = state_dir(env)
    (state / "home").mkdir(parents=True, exist_ok=True)
    (state / "backend").mkdir(parents=True, exist_ok=True)
    for name in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_ACCESS_TOKEN", UNVERIFIED_ENV):  # one source each, no cloud
        env.pop(name, None)
    env.update(
        PULUMI_HOME=str(state / "home"),
        PULUMI_BACKEND_URL=f"file://{state / 'backend'}",
        PULUMI_CONFIG_PASSPHRASE_FILE=str(passphrase_file(state)),
        PULUMI_SKIP_UPDATE_CHECK="true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
        PATH=os.pathsep.join([str(TOOLS_BIN), str(VENV_BIN), env.get("PATH", "")]),
    )
    env.setdefault("PULUMI_DIY_BACKEND_NO_LEGACY_WARNING", "true")
    if stack is not None:
        env.update(trust_environ(stack, env))
    return env


def trust_environ(stack: str, environ: Mapping[str, str], state: Path | None = None) -> dict[str, str]:
    """``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` for the providers of ``stack`` ("": none known: trust nothing)."""
    state = state or state_dir(environ)
    # An empty directory for SSL_CERT_DIR, and an empty bundle for a provider that may trust nothing.
    empty, nothing = state / "trust" / "no-ca-dir", state / "trust" / "no-ca.pem"
    empty.mkdir(parents=True, exist_ok=True)
    nothing.touch()
    return stack_trust(stack, environ).environ(empty, nothing)


def stacks_dir(repo: Path = REPO_ROOT, environ: Mapping[str, str] | None = None) -> Path:
    """Where the stack files are: ``$GPUFLEET_STACKS_DIR``, else Pulumi.yaml's stackConfigDir in ``repo``."""
    env = os.environ if environ is None else environ
    if env.get(STACKS_ENV):
        return Path(env[STACKS_ENV])
    manifest = YAML(typ="safe").load((repo / "Pulumi.yaml").read_text()) or {}
    return repo / str(manifest.get("stackConfigDir") or ".")


def stack_file(stack: str, repo: Path = REPO_ROOT) -> Path:
    """The file of a stack (``org/project/lab`` is ``lab``), in ``stacks_dir``."""
    return stacks_dir(repo) / f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"


def stack_trust(stack: str, environ: Mapping[str, str], repo: Path = REPO_ROOT) -> ProviderTrust:
    """What pulumi-vsphere may trust on ``stack``; a refusal when no stack is known or its file does not load
    (the program then names the problem itself)."""
    if not stack:
        return ProviderTrust("--stack", refusal="no stack selected")
    try:
        return provider_trust(load_stack(stack_file(stack, repo)), environ)
    except (GpufleetError, OSError) as exc:
        return ProviderTrust("--stack", refusal=f"stack {stack}: {exc}")


# Commands that may launch the providers of a stack; for these the selected stack is asked when none is given.
PROVIDER_COMMANDS = frozenset({"up", "update", "preview", "pre", "refresh", "destroy", "down", "import", "watch"})


def stack_of_args(args: list[str], environ: Mapping[str, str]) -> str | None:
    """The stack a pulumi command line runs on, as far as it says: ``--stack X`` / ``--stack=X`` / ``-s X``,
    else ``$PULUMI_STACK``; None when neither (pulumi then uses the selected stack)."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("--stack", "-s") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--stack="):
            return arg.removeprefix("--stack=")
        if arg.startswith("-s") and len(arg) > 2 and not arg.startswith("--"):
            return arg[2:]
    return environ.get("PULUMI_STACK") or None


def selected_stack(env: Mapping[str, str], project: Path) -> str:
    """The stack selected in the engine's workspace (``pulumi stack --show-name``), or "" when none is."""
    try:
        done = subprocess.run(
            [str(pulumi_binary()), "stack", "--show-name", "--non-interactive"],
            cwd=project,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired, EngineMissing):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
