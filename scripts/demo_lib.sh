# Shared by scripts/demo.sh (through pulumi up) and scripts/demo_cli.sh (through the gpufleet verbs): sourced, not run.
G=.venv/bin/gpufleet

# Colour only for a person at a terminal: piped or logged (or NO_COLOR set), every line is plain text.
if [[ -t 1 && -z ${NO_COLOR:-} ]]; then
  step() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }
  PULUMI_COLOR=auto
else
  step() { printf '\n== %s\n' "$*"; }
  PULUMI_COLOR=never
fi

# The lab's ports: `lab up`'s defaults (SSH 22 on each host's own loopback address, vCenter 8989) unless these are
# set, e.g. for a second checkout on the same machine: GPUFLEET_DEMO_SSH_PORT=7022 GPUFLEET_DEMO_VCENTER_PORT=24443.
lab_up() {
  $G lab up ${GPUFLEET_DEMO_SSH_PORT:+--ssh-port "$GPUFLEET_DEMO_SSH_PORT"} \
    ${GPUFLEET_DEMO_VCENTER_PORT:+--vcenter-port "$GPUFLEET_DEMO_VCENTER_PORT"} "$@"
}

# The offline half of the main job on STACK ($1): the spec, a MIG layout and the plan (no lab change).
check_and_plan() {
  step "2. Validate the fleet spec against the GPU catalog, and the guardrails of the policy pack ($1)"
  $G validate "$1" --policy
  step "3. Check a MIG layout: 4g.40gb + 2g.20gb + 1g.10gb on an A100 80GB"
  $G mig fit --gpu A100-80GB 4g.40gb 2g.20gb 1g.10gb
  step "4. Plan: where every VM's GPUs go"
  $G plan "$1"
}
