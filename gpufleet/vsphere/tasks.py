"""Wait for a vSphere task; a failure becomes a typed ``TaskError`` raised from the vSphere fault.

    task = host.EnterMaintenanceMode_Task(timeout=600)
    wait_for_task(task, what="enter maintenance mode on esxi-01.lab", timeout=900)

Polling backs off exponentially with full jitter (tenacity), from ``poll_min`` to ``poll_max`` seconds, so many
threads waiting on many tasks do not hammer vCenter in lockstep, and short tasks are still seen quickly.
``TaskError.fault`` is the vSphere fault's type name (``InvalidState``, ``InsufficientResourcesFault``...) or
``Timeout`` when the task outlived ``timeout``; the fault itself is the ``__cause__``.
"""

from __future__ import annotations

from typing import Any

from pyVmomi import vim, vmodl
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_random_exponential

from gpufleet.errors import TaskError

_RUNNING = (vim.TaskInfo.State.queued, vim.TaskInfo.State.running)


def fault_name(fault: BaseException) -> str:
    """``InvalidPowerState`` for ``vim.fault.InvalidPowerState`` (pyvmomi's class names carry the namespace)."""
    return type(fault).__name__.rsplit(".", 1)[-1]


def fault_message(fault: BaseException) -> str:
    """A person-readable line for a vSphere fault (its localized message, else its type)."""
    msg = getattr(fault, "msg", None) or getattr(fault, "localizedMessage", None)
    if not msg:
        faults = getattr(fault, "faultMessage", None) or []
        msg = "; ".join(m.message for m in faults if getattr(m, "message", None))
    return msg or fault_name(fault)


def wait_for_task(
    task: vim.Task,
    *,
    what: str,
    timeout: float,
    poll_min: float = 0.05,
    poll_max: float = 2.0,
) -> Any:
    """Block until ``task`` ends; return its result, or raise ``TaskError`` (fault name + message)."""
    retrying = Retrying(
        retry=retry_if_result(lambda state: state in _RUNNING),
        wait=wait_random_exponential(multiplier=poll_min, max=poll_max),
        stop=stop_after_delay(timeout),
        reraise=False,
    )
    try:
        retrying(lambda: task.info.state)
    except RetryError as exc:
        raise TaskError(f"{what}: not finished after {timeout:.0f} s", fault="Timeout") from exc
    except vmodl.MethodFault as exc:  # reading the task itself failed (session gone, task purged)
        raise TaskError(f"{what}: cannot read the task: {fault_message(exc)}", fault=fault_name(exc)) from exc
    info = task.info
    if info.state == vim.TaskInfo.State.success:
        return info.result
    fault = info.error
    name = fault_name(fault) if fault is not None else "UnknownFault"
    message = fault_message(fault) if fault is not None else "no fault reported"
    error = TaskError(f"{what} failed: {message} ({name})", fault=name)
    if isinstance(fault, BaseException):
        raise error from fault
    raise error
