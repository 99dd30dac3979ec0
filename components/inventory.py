"""vSphere inventory ids the pulumi-vsphere resources need, looked up once per name (pulumi-vsphere invokes).

``VsphereRefs(fleet, opts)`` looks up the datacenter, the cluster (its root resource pool) and the datastore of
the fleet; ``network_id(name)`` and ``host_id(name)`` look up a port group or host the first time they are asked.
Pass the parent/provider through ``opts`` so the invokes use the same vSphere provider as the resources.
"""

from __future__ import annotations

import pulumi
import pulumi_vsphere as vsphere

from gpufleet.spec.models import Fleet


class VsphereRefs:
    """Ids of the fleet's datacenter, cluster resource pool, datastore, networks and hosts (as Outputs)."""

    def __init__(self, fleet: Fleet, opts: pulumi.InvokeOptions | None = None) -> None:
        self._opts = opts
        self.datacenter_id: pulumi.Output[str] = vsphere.get_datacenter_output(name=fleet.datacenter, opts=opts).id
        cluster = vsphere.get_compute_cluster_output(name=fleet.cluster, datacenter_id=self.datacenter_id, opts=opts)
        self.resource_pool_id: pulumi.Output[str] = cluster.resource_pool_id
        self.datastore_id: pulumi.Output[str] | None = (
            vsphere.get_datastore_output(name=fleet.datastore, datacenter_id=self.datacenter_id, opts=opts).id
            if fleet.datastore
            else None
        )
        self._networks: dict[str, pulumi.Output[str]] = {}
        self._hosts: dict[str, pulumi.Output[str]] = {}

    def network_id(self, name: str) -> pulumi.Output[str]:
        if name not in self._networks:
            self._networks[name] = vsphere.get_network_output(
                name=name, datacenter_id=self.datacenter_id, opts=self._opts
            ).id
        return self._networks[name]

    def host_id(self, name: str) -> pulumi.Output[str]:
        if name not in self._hosts:
            self._hosts[name] = vsphere.get_host_output(name=name, datacenter_id=self.datacenter_id, opts=self._opts).id
        return self._hosts[name]
