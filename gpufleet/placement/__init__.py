"""MIG / vGPU placement: the exact MIG fit (``mig.fit``) and the fleet planner (``planner.plan``)."""
