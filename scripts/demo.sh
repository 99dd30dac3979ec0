#!/usr/bin/env bash
# The main job of gpufleet, end to end, on the embedded lab: through the real Pulumi engine (`pulumi preview` and
# `pulumi up`, built from its Go modules by `make engine`), then the post-deploy checks and the audit.
# scripts/demo_cli.sh is the same job through the gpufleet verbs alone (`make demo-cli`).
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=stacks/Pulumi.lab.yaml
P() { scripts/pulumi --color "$PULUMI_COLOR" "$@"; }
source scripts/demo_lib.sh
mkdir -p reports

step "1. Start the embedded lab (vcsim with GPU hosts over HTTPS, ESXi hosts and guests over SSH)"
reused=$(lab_up --json | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["reused"])')
$G lab status
check_and_plan "$STACK"
step "5. pulumi preview: what the engine will do (local file backend in .engine/, generated passphrase)"
if P stack ls --json | .venv/bin/python -c 'import json, sys; sys.exit(0 if any(s["name"] == "lab" for s in json.load(sys.stdin)) else 1)'; then
  if [[ $reused == False ]]; then
    echo "a new lab was started: the lab stack's state describes the old one, starting it afresh"
    P stack rm lab --force --yes
    P stack init lab
  fi
else
  P stack init lab
fi
P preview --stack lab --policy-pack policy   # the guardrails (policy/, policy/config/lab.json) judge it first
step "6. pulumi up: hosts prepared (at most maxUnavailable at once), VMs' GPUs and templates converged, guests licensed"
.venv/bin/python -c 'from lab.guest.units import reset_guest; from lab.paths import LabPaths; reset_guest(LabPaths.resolve(), "vm-rdma-01", bare=True); print("vm-rdma-01: guest reset bare (no NVIDIA software): GuestPreparation installs it")'
P up --stack lab --yes --skip-preview --policy-pack policy
step "6b. Converged: pulumi up again changes nothing (--expect-no-changes)"
P up --stack lab --yes --expect-no-changes
step "7. Post-deploy checks (pytest-testinfra) on hosts and guests"
$G verify "$STACK" --junit reports/verify.xml
step "8. Audit desired vs actual GPU state (without Pulumi)"
$G audit "$STACK" --html reports/audit.html --junit reports/audit.xml
step "Done: pulumi stack output --stack lab (scripts/pulumi), reports/audit.html, reports/verify.xml, reports/audit.xml"
