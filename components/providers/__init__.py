"""gpufleet's dynamic providers (``pulumi.dynamic``), one module per resource kind.

A stack's state holds each provider pickled (dill) by its import path, e.g.
``components.providers.vm_gpu_devices.VmGpuDevicesProvider``: these module paths and class names are a promise to
existing stacks; never move or rename them. Providers keep no connection, password or lock: credentials come from
``configure()`` (the stack config) or the environment at call time, and every call opens its own session.

Modules (fixed paths):

- ``vm_gpu_devices``: ``VmGpuDevices``, every GPU/RDMA device and GPU extraConfig key of one VM.
- ``vcenter_setting``: ``VcenterAdvancedSetting``, one vCenter advanced setting (``vgpu.hotmigrate.enabled``).
- ``host_step``: ``HostDriver``, ``HostGraphics``, ``HostMigMode``, ``HostAts``, the host preparation steps.
- ``host_license``: ``HostLicenseAssignment``, the vSphere licence assigned to an ESXi host.
- ``guest_licensing``: ``GuestNvidiaLicensing``, the NVIDIA client configuration token in a guest.
"""
