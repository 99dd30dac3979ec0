"""The NVIDIA vGPU host driver: install the component / VIB by absolute datastore path, comparing versions.

- none installed or an older one: install (the bundle is on the datastore already: pre-staged and proven before
  the first host entered maintenance, ``gpufleet.hosts.stage``; uploaded right before the install only where nothing
  staged it);
- the same release: nothing to do;
- a newer one: refused (no silent downgrade): the host fails untouched, the message says how to proceed.

The install result's "Reboot Required: false" is not trusted: NVIDIA's driver loads only at boot. Whether a
reboot is due is decided from the facts (installed in the boot bank but not the one nvidia-smi runs), see
``steps.reboot.reboot_reasons``.
"""

from __future__ import annotations

from gpufleet.hosts.model import Desired, HostFacts
from gpufleet.hosts.steps.base import Check, Difference, HostView, StepContext, StepFailed
from gpufleet.readers import esxcli


class DriverStep:
    name = "driver"

    def compare(self, want: HostView, have: HostView) -> list[Difference]:
        if want.driver is None or have.driver is None:
            return []
        if have.driver and esxcli.compare_versions(have.driver, want.driver) == 0:
            return []
        actual = have.driver or "not installed"
        return [Difference("driver", want.driver, actual, f"NVIDIA host driver is not {want.driver}", "host.driver")]

    def check(self, desired: Desired, facts: HostFacts) -> Check:
        driver = desired.driver
        if driver is None:
            return Check.ok("no vGPU GPU on this host: driver left as is")
        installed = facts.driver_installed
        if not self.compare(HostView.wanted(desired), HostView.of_facts(desired, facts)):
            return Check.ok(f"{installed} installed")
        if installed is None:
            return Check(True, f"install {driver.version}", reboot=True)
        order = esxcli.compare_versions(installed, driver.version)
        if order < 0:
            return Check(True, f"upgrade {installed} -> {driver.version}", reboot=True)
        return Check(  # newer: compare_versions is a total order, equal was ruled out above
            False,
            f"{installed} installed",
            refused=(
                f"the installed driver {installed} is newer than the wanted {driver.version}: not downgrading. "
                f"Set driver.version to {installed}, or remove the newer driver by hand first"
            ),
        )

    def apply(self, ctx: StepContext, facts: HostFacts) -> str:
        driver = ctx.desired.driver
        assert driver is not None
        uploaded = ""
        if not facts.bundle_on_host:
            if ctx.local_bundle is None or not ctx.local_bundle.is_file():
                raise StepFailed(f"{driver.bundle} is not on the host and no local bundle (driver.localPath) to upload")
            ctx.note(f"uploading {ctx.local_bundle.name}")
            if ctx.runner.upload(ctx.local_bundle, driver.bundle):
                uploaded = f"uploaded {ctx.local_bundle.name}; "
        ctx.note(f"installing {driver.version}")
        result = esxcli.install(ctx.runner, driver.bundle, driver.kind, timeout=ctx.install_timeout)
        # Whether the boot bank now holds it is asserted from the next facts (gpufleet.hosts.prepare), not here.
        said = "true" if result.reboot_required else "false"
        return f"{uploaded}installed {driver.version} (esxcli: Reboot Required: {said}; the driver loads at boot)"
