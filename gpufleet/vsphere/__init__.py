"""The pyvmomi adapter: everything gpufleet asks vCenter, in small modules with one job each.

- ``connect``: ``connect(settings)`` -> a ServiceInstance over verified TLS (CA bundle or pinned SHA-256), as a
  context manager that logs out.
- ``tasks``: ``wait_for_task(task, ...)`` -> the result, or a typed ``TaskError`` from the vSphere fault.
- ``hosts``: find a HostSystem, enter/exit maintenance with evacuation and a timeout, cluster capacity check.
- ``fields``: custom attributes on managed entities (gpufleet marks the maintenance it entered).

Connection settings come from ``gpufleet.connections.resolve_connections(stack)``.
"""
