#!/usr/bin/env bash
# The main job of gpufleet through the gpufleet verbs alone (no Pulumi engine), on the embedded lab or the stack given
# as $1. scripts/demo.sh (`make demo`) is the same job through `pulumi up`.
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=${1:-stacks/Pulumi.lab.yaml}
source scripts/demo_lib.sh
mkdir -p reports

step "1. Start the embedded lab (vcsim with GPU hosts over HTTPS, ESXi hosts and guests over SSH)"
lab_up
check_and_plan "$STACK"
step "5. Prepare the ESXi hosts (maintenance, NVIDIA driver, reboot, graphics, MIG, ATS), rolling"
$G hosts prepare "$STACK"
step "6. Converge the VMs' GPU and RDMA devices (vGPU, MIG-backed vGPU, DirectPath, PVRDMA)"
$G vms apply "$STACK"
step "6b. Converged: dry runs of both find nothing left to do (exit 0; 2 would mean pending changes)"
$G hosts prepare "$STACK" --dry-run
$G vms apply "$STACK" --dry-run
step "7. Licensing: vSphere keys on hosts, NVIDIA client configuration token and gridd.conf in guests"
$G license apply "$STACK"
step "8. Post-deploy checks (pytest-testinfra) on hosts and guests"
$G verify "$STACK" --junit reports/verify.xml
step "9. Audit desired vs actual GPU state"
$G audit "$STACK" --html reports/audit.html --junit reports/audit.xml
step "Done: reports/audit.html (open it in a browser), reports/verify.xml, reports/audit.xml"
