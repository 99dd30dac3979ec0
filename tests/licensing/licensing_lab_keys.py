"""Lab-only licence keys and variables of the licensing tests (vSphere key format; never real keys)."""

VCENTER_ENV = "GPUFLEET_TEST_VCENTER_LICENSE"
OWN_ENV = "GPUFLEET_TEST_ESXI04_LICENSE"
VCENTER_KEY = "GFVCS-TEST0-00000-00000-00001"
OWN_KEY = "GFOWN-TEST0-00000-00000-00004"
