module gpufleet.local/lab/execclient

go 1.26.0
