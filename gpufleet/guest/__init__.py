"""The guest GPU stack: what a guest has (``facts``) and ``gpufleet guests prepare`` (driver, toolkit, licensing
through ``gpufleet.licensing``)."""
