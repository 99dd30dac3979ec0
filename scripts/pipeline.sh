#!/usr/bin/env bash
# The GitOps pipeline's stages: what .github/workflows/gpufleet.yml runs, and what a person runs to do the same.
#
#   scripts/pipeline.sh list                 the stacks the workflow fans out over (a JSON list, one stack per cluster)
#   scripts/pipeline.sh pr STACK             validate + policy + plan + preview (with the policy pack); writes the PR
#                                            comment to $OUT/STACK/comment.md
#   scripts/pipeline.sh deploy STACK         up --refresh (drift repaired; the policy pack) + verify + audit, recorded as proof in
#                                            $PROOF/STACK (gpufleet proof record)
#   scripts/pipeline.sh promote FROM TO      FROM's proven settings written into TO's stack file (gpufleet promote
#                                            --proof $PROOF/FROM --write), then the pr stage of TO
#   scripts/pipeline.sh drift STACK          audit + verify, recorded as STACK's proof again (exit 2: drift or a
#                                            failed check: promoting from STACK is refused until it is repaired)
#
# Exit status: 0 the stage passed; 1 bad input or a step failed; 2 "no" (a policy violation, a VM that does not
# fit, a promotion refused for want of proof, drift). Each step's exit status is kept in $OUT/STACK/<step>.rc.
# Environment: GPUFLEET_STACKS_DIR (stack files; default stacks/), GPUFLEET_PIPELINE_OUT (default reports/pipeline),
# GPUFLEET_PROOF_DIR (default $OUT/proof), GPUFLEET_ENGINE_STATE (the engine's backend; keep it between runs),
# and each stack's secrets as its secret references name them.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
G=${GPUFLEET:-$ROOT/.venv/bin/gpufleet}
STACKS=${GPUFLEET_STACKS_DIR:-$ROOT/stacks}
OUT=${GPUFLEET_PIPELINE_OUT:-$ROOT/reports/pipeline}
PROOF=${GPUFLEET_PROOF_DIR:-$OUT/proof}
export GPUFLEET_STACKS_DIR=$STACKS NO_COLOR=1

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-1}"
}

stack_file() {
  local file=$STACKS/Pulumi.$1.yaml
  [[ $1 =~ ^[A-Za-z0-9_.-]+$ && -f $file ]] || { echo "pipeline: no stack $1 (no $file)" >&2; exit 1; }
  echo "$file"
}

# step DIR NAME CMD...: run CMD, its output to DIR/NAME.out, its exit status to DIR/NAME.rc; returns that status
step() {
  local dir=$1 name=$2 rc
  shift 2
  echo "pipeline: $name: $*" >&2
  "$@" >"$dir/$name.out" 2>"$dir/$name.err"
  rc=$?
  echo "$rc" >"$dir/$name.rc"
  echo "pipeline: $name: exit $rc" >&2
  return "$rc"
}

ensure_stack() { "$G" pulumi stack select --create --stack "$1" >/dev/null; }

# the worst exit status of the steps run: 1 (an error) wins over 2 ("no")
worst() {
  local w=0 rc
  for rc in "$@"; do
    if [[ $rc == 1 || ($rc != 0 && $rc != 2) ]]; then w=1; elif [[ $rc == 2 && $w == 0 ]]; then w=2; fi
  done
  echo "$w"
}

pr() {
  local stack=$1 file dir rcs=()
  file=$(stack_file "$stack") || exit 1
  dir=$OUT/$stack
  mkdir -p "$dir"
  step "$dir" validate "$G" validate "$file" --policy --format markdown; rcs+=($?)
  step "$dir" plan "$G" plan "$file" --format markdown; rcs+=($?)
  ensure_stack "$stack"
  step "$dir" preview "$G" pulumi preview --stack "$stack" --diff --policy-pack policy; rcs+=($?)
  {
    echo "## gpufleet: \`$stack\`"
    echo
    echo "| step | result |"
    echo "|---|---|"
    echo "| validate + policy | $(verdict "${rcs[0]}") |"
    echo "| plan | $(verdict "${rcs[1]}") |"
    echo "| pulumi preview (policy pack) | $(verdict "${rcs[2]}") |"
    echo
    cat "$dir/validate.out"
    echo
    cat "$dir/plan.out"
    echo
    echo "<details><summary>pulumi preview</summary>"
    echo
    echo '```'
    cat "$dir/preview.out" "$dir/preview.err"
    echo '```'
    echo
    echo "</details>"
  } >"$dir/comment.md"
  echo "pipeline: PR comment: $dir/comment.md" >&2
  return "$(worst "${rcs[@]}")"
}

verdict() {
  case $1 in
    0) echo "passed" ;;
    2) echo "**refused** (exit 2)" ;;
    *) echo "**failed** (exit $1)" ;;
  esac
}

deploy() {
  local stack=$1 file dir
  file=$(stack_file "$stack") || exit 1
  dir=$OUT/$stack
  mkdir -p "$dir" "$PROOF"
  ensure_stack "$stack"
  step "$dir" up "$G" pulumi up --stack "$stack" --yes --skip-preview --refresh --policy-pack policy || return 1
  # the proof of this deployment: an audit in sync and a green verify, stamped with the stack's content hash
  rm -rf "$PROOF/$stack"
  step "$dir" proof "$G" proof record "$file" --out "$PROOF/$stack"
}

promote() {
  local from=$1 to=$2 from_file to_file dir rc
  from_file=$(stack_file "$from") || exit 1
  to_file=$(stack_file "$to") || exit 1
  dir=$OUT/$to
  mkdir -p "$dir"
  step "$dir" promote "$G" promote "$from_file" "$to_file" --proof "$PROOF/$from" --write --format markdown
  rc=$?
  [[ $rc == 0 ]] || return "$rc"
  pr "$to"
  rc=$?
  # the PR comment leads with what was promoted, then what TO's checks and preview say
  cat "$dir/promote.out" - <"$dir/comment.md" >"$dir/comment.md.tmp" && mv "$dir/comment.md.tmp" "$dir/comment.md"
  return "$rc"
}

drift() {
  local stack=$1 file dir
  file=$(stack_file "$stack") || exit 1
  dir=$OUT/$stack
  mkdir -p "$dir" "$PROOF"
  # audit + verify, kept as the stack's proof: a drifted stack stops proving itself (promote from it is refused)
  rm -rf "$PROOF/$stack"
  step "$dir" proof "$G" proof record "$file" --out "$PROOF/$stack"
}

list() {
  local names=()
  for f in "$STACKS"/Pulumi.*.yaml; do
    [[ -e $f ]] || continue
    f=${f##*/Pulumi.}
    names+=("\"${f%.yaml}\"")
  done
  (IFS=,; echo "[${names[*]}]")
}

[[ $# -ge 1 ]] || usage
stage=$1
shift
case $stage in
  list) [[ $# == 0 ]] || usage; list ;;
  pr | deploy | drift) [[ $# == 1 ]] || usage; "$stage" "$1" ;;
  promote) [[ $# == 2 ]] || usage; promote "$1" "$2" ;;
  -h | --help | help) usage 0 ;;
  *) echo "pipeline: unknown stage $stage (valid: list, pr, deploy, promote, drift)" >&2; exit 1 ;;
esac
