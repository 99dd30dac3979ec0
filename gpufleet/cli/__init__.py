"""The ``gpufleet`` command line: the outermost layer, the only place errors become exit codes."""
