"""gpufleet's dynamic providers (``pulumi.dynamic``), one module per resource kind.

A stack's state holds each provider pickled (dill) by its import path, e.g.
``components.providers.vm_gpu_devices.VmGpuDevicesProvider``: these module paths and class names are a promise to
existing stacks; never move or rename them. Providers keep no connection, password or lock: credentials come from
``configure()`` (the stack config) or the environment at call time, and every call opens its own session.

Modules (fixed paths):

- ``vm_gpu_devices``: ``VmGpuDevices``, every GPU/RDMA device and GPU extraConfig key of one VM.
- ``vcenter_setting``: ``VcenterAdvancedSetting``, one vCenter advanced setting (``vgpu.hotmigrate.enabled``).
- ``host_prepare``: ``HostPreparation``, the whole preparation of one host (one maintenance window, one reboot).
- ``host_step``: ``HostDriver``, ``HostGraphics``, ``HostMigMode``, ``HostAts``: legacy per-step host resources of
  older states (deleted on the next ``pulumi up``; they run the host through ``HostPreparation``'s run).
- ``template_settings``: ``TemplateGpuSettings``, the GPU settings of an existing template.
- ``template_mark``: ``VmTemplateMark``, a VM marked as a template.
- ``host_license``: ``HostLicenseAssignment``, the vSphere licence assigned to an ESXi host.
- ``guest_licensing``: ``GuestNvidiaLicensing``, the NVIDIA client configuration token in a guest.
- ``guest_prepare``: ``GuestPreparation``, the guest side of a GPU VM (NVIDIA driver, Container Toolkit, Docker).
- ``bitfusion_client``: ``BitfusionClientConfig``, the Bitfusion client configuration of a GPU pool client.
"""
