"""The guest's ``nvidia-smi``: the default table, ``-L``, ``-q`` / ``-q -x`` (with the licence state of
nvidia-gridd), ``--query-gpu``, ``topo -m``; formats in lab.guest.smi."""

from __future__ import annotations

import time

from lab.guest.commands.base import Guest, Input, Result, installed, not_found, ok
from lab.guest.commands.registry import command


@command("nvidia-smi")
def cmd_nvidia_smi(g: Guest, argv: list[str], stdin: Input) -> Result:
    from lab.guest import gridd, smi

    if not installed(g, "nvidia-smi"):
        return not_found("nvidia-smi")
    view = g.view
    if view.driver_version is None:
        return ok(smi.NO_DRIVER, rc=9)
    args = argv[1:]
    now = time.time()
    status = gridd.license_status(g.state, now)
    if not args:
        return ok(smi.render_table(view, now))
    if args == ["-L"] or args == ["--list-gpus"]:
        return ok(smi.render_list(view))
    if args and args[0] == "topo":
        if args[1:] in (["-m"], ["--matrix"]):
            return ok(smi.render_topo(view, bool(g.state.get("nvlink", True))))
        return ok(smi.BAD_ARGS, rc=2)
    if args and args[0] == "vgpu":
        return ok("No supported devices in vGPU mode\n")
    query = {a for a in args if a in ("-q", "--query")}
    xml = any(a in ("-x", "--xml-format") for a in args)
    display = None
    for i, a in enumerate(args):
        if a in ("-d", "--display") and i + 1 < len(args):
            display = args[i + 1].upper()
        elif a.startswith("--display="):
            display = a.split("=", 1)[1].upper()
    query_gpu = next((a.split("=", 1)[1] for a in args if a.startswith("--query-gpu=")), None)
    fmt = next((a.split("=", 1)[1] for a in args if a.startswith("--format=")), None)
    if query_gpu is not None:
        rc, out, err = smi.render_query_gpu(view, query_gpu, fmt)
        return ok(out, err, rc)
    if query and xml and display is None:
        return ok(smi.render_xml(view, status, now))
    if query and not xml:
        rc, out = smi.render_query(view, status, now, display)
        return ok(out, rc=rc)
    return ok(smi.BAD_ARGS, rc=2)
