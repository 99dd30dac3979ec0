# Shared by scripts/demo.sh (through pulumi up) and scripts/demo_cli.sh (through the gpufleet verbs): sourced, not run.
G=.venv/bin/gpufleet

step() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }

# The offline half of the main job on STACK ($1): the spec, a MIG layout and the plan (no lab change).
check_and_plan() {
  step "2. Validate the fleet spec against the GPU catalog ($1)"
  $G validate "$1"
  step "3. Check a MIG layout: 4g.40gb + 2g.20gb + 1g.10gb on an A100 80GB"
  $G mig fit --gpu A100-80GB 4g.40gb 2g.20gb 1g.10gb
  step "4. Plan: where every VM's GPUs go"
  $G plan "$1"
}
