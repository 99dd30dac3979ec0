"""The GPU catalog: models, PCI IDs, vGPU profiles, MIG geometry and MMIO sizing, as data (see data/)."""
