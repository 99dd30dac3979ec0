#!/usr/bin/env bash
# The main job of gpufleet through the gpufleet verbs alone (no Pulumi engine), on the embedded lab or the stack given
# as $1. scripts/demo.sh (`make demo`) is the same job through `pulumi up`.
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=${1:-stacks/Pulumi.lab.yaml}
G=.venv/bin/gpufleet
mkdir -p reports

step() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }

step "1. Start the embedded lab (vcsim with GPU hosts over HTTPS, ESXi hosts and guests over SSH)"
$G lab up
step "2. Validate the fleet spec against the GPU catalog ($STACK)"
$G validate "$STACK"
step "3. Check a MIG layout: 4g.40gb + 2g.20gb + 1g.10gb on an A100 80GB"
$G mig fit --gpu A100-80GB 4g.40gb 2g.20gb 1g.10gb
step "4. Plan: where every VM's GPUs go"
$G plan "$STACK"
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
