#!/usr/bin/env bash
# `make bench`: run every benchmark (benchmarks/*_bench.py), all of them whatever one of them finds, then a summary
# table of every target met or missed. The convention (benchmarks/targets.py): a benchmark prints one line
#   TARGET <name>: met|missed (<figure> vs <target>)
# per target and exits 0 (all met) or 3 (one missed); any other exit, or no TARGET line, is an error.
# Exit status: 0 every target met, 3 a target missed, 1 a benchmark could not run (error wins over missed).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
logs=$(mktemp -d "${TMPDIR:-/tmp}/gpufleet-bench-XXXXXX")
trap 'rm -rf "$logs"' EXIT
rows=()
worst=0
benches=("$@")
[[ ${#benches[@]} -gt 0 ]] || benches=(benchmarks/*_bench.py)
for bench in "${benches[@]}"; do
  name=$(basename "$bench" .py)
  echo "== $bench"
  "$PY" "$bench" 2>&1 | tee "$logs/$name.log"
  status=${PIPESTATUS[0]}
  targets=$(grep -E '^TARGET [^:]+: (met|missed) ' "$logs/$name.log" || true)
  if [[ $status -ne 0 && $status -ne 3 ]] || [[ -z $targets ]]; then
    why="exit $status"
    [[ -z $targets ]] && why="$why, no TARGET line"
    rows+=("$name|error|($why)")
    worst=1
    continue
  fi
  while IFS= read -r line; do
    target=${line#TARGET }
    label=${target%%: *}
    rest=${target#*: }
    rows+=("$name|${rest%% *}|$label ${rest#* }")
    [[ ${rest%% *} == missed && $worst -eq 0 ]] && worst=3
  done <<< "$targets"
  [[ $status -eq 3 && $worst -eq 0 ]] && worst=3
done
echo
echo "== bench summary"
printf '%-14s %-7s %s\n' benchmark result target
for row in "${rows[@]}"; do
  IFS='|' read -r name result what <<< "$row"
  printf '%-14s %-7s %s\n' "$name" "$result" "$what"
done
case $worst in
  0) echo "every target met" ;;
  3) echo "some target missed" ;;
  *) echo "some benchmark could not run" ;;
esac
exit "$worst"
