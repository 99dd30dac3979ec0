#!/usr/bin/env bash
# Run gpufleet's guest checks that apply to a passthrough GPU on THIS machine, with testinfra's local backend:
# the machine is the VM `h100-guest` of docs/device_run/Pulumi.device-h100.yaml (one whole H100 SXM5 80GB).
#
#   OUT=/some/dir scripts/device_checks.sh        # results: junit.xml, pytest.log, verify.json, raw_outputs.txt
#
# On the device machine (no network) the Python packages come from wheels carried in .whl/ (see
# docs/device_run/README.md for how they were fetched); elsewhere the project's .venv is used as is.
# Read-only: only nvidia-smi queries (-L, -q -x, topo -m, --query-gpu) and file reads; no GPU setting is changed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/device_run}
mkdir -p "$OUT"
PY=python3
if [[ -x .venv/bin/python ]]; then
  PY=.venv/bin/python  # a set-up checkout (make setup)
elif ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
STACK=docs/device_run/Pulumi.device-h100.yaml
NODE=h100-guest

{
  echo "# device_checks.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
  for cmd in "uname -a" "uname -m" "getconf LONG_BIT" "cat /proc/driver/nvidia/version" "nvidia-smi -L" \
    "nvidia-smi --query-gpu=index,name,pci.bus_id,pci.device_id,driver_version,memory.total,mig.mode.current,mig.mode.pending,virtualization_mode --format=csv" \
    "nvidia-smi topo -m" "grep -E ^nvidia /proc/modules" "command -v nvidia-ctk docker ibv_devices" "nvidia-smi -q -x"; do
    echo "\$ $cmd"
    bash -c "$cmd" 2>&1
    echo "[exit $?]"
  done
} >"$OUT/raw_outputs.txt" 2>&1

{
  echo "\$ $PY -m pytest -p gpufleet.checks.plugin --pyargs gpufleet.checks --noconftest --stack $STACK --hosts local://$NODE"
  $PY -c 'import sys, pytest, testinfra, pydantic, paramiko; print("python", sys.version.split()[0], "pytest", pytest.__version__, "pydantic", pydantic.VERSION, "paramiko", paramiko.__version__)'
  # -p loads the plugin from the checkout (an installed gpufleet registers it by its pytest11 entry point).
  plugin=(-p gpufleet.checks.plugin)
  $PY -c 'from gpufleet.checks.run import _plugin_installed as p; raise SystemExit(0 if p() else 1)' 2>/dev/null && plugin=()
  $PY -m pytest "${plugin[@]}" --pyargs gpufleet.checks --noconftest -p no:cacheprovider -o addopts= -rA -v \
    --stack "$STACK" --hosts "local://$NODE" --junitxml="$OUT/junit.xml" -o junit_family=xunit2
  echo "[pytest exit $?]"
} 2>&1 | tee "$OUT/pytest.log"

# The same run through gpufleet verify's runner (the JSON document `gpufleet verify --json` prints).
$PY - "$STACK" "$NODE" >"$OUT/verify.json" 2>>"$OUT/pytest.log" <<'EOF'
import json, sys
from gpufleet.checks.run import run_checks
stack, node = sys.argv[1], sys.argv[2]
run = run_checks(stack, hosts=f"local://{node}")
print(json.dumps({"stack": stack, "hosts": f"local://{node}", **run.to_json()}, indent=2))
EOF
grep -E '"(passed|failed|skipped|error)"' "$OUT/verify.json" | head -4
