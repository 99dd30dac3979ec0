#!/usr/bin/env bash
# Build the Pulumi engine from its Go modules into .tools/bin (`make engine`; also run by `make setup`).
#
#   pulumi                       the CLI and engine        tools/engine/go.mod   (pkg/v3 + sdk/v3, same version)
#   pulumi-language-python       the Python language host  tools/langhost/go.mod (see below)
#   pulumi-language-python-exec  the shim the host runs    from the language host's module zip
#   pulumi-resource-pulumi-python  the dynamic provider launcher, from the CLI's sdk/v3 module zip
#   pulumi-resource-vsphere      pulumi-vsphere's provider: probed; built only if the proxy serves its modules
#
# Versions live in the go.mod/go.sum files only; each binary is rebuilt when its go.mod/go.sum, this script or the
# Go toolchain changes (a stamp per binary in .tools/stamps), so a second run only checks. No binary is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.tools/bin
STAMPS=$ROOT/.tools/stamps
mkdir -p "$BIN" "$STAMPS"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

if ! command -v go >/dev/null; then
  echo "engine: Go >= 1.26 must be on PATH to build the Pulumi engine from its Go modules" >&2
  exit 1
fi
GOVERSION=$(go env GOVERSION)
TAGS=osusergo,grpcnotrace

module_version() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }
module_dir() { (cd "$1" && go mod download -json "$2@$(module_version "$1" "$2")" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'); }
stamp_of() { cat "$1/go.mod" "$1/go.sum" "$0" | { cat; echo "$GOVERSION"; } | sha256sum | cut -d' ' -f1; }
fresh() { [[ -x $BIN/$1 && -f $STAMPS/$1 && $(cat "$STAMPS/$1") == "$2" ]]; }

# build NAME MODULE_DIR MAIN_PACKAGE VERSION_MODULE MINUTES
build() {
  local name=$1 dir=$ROOT/$2 pkg=$3 vmod=$4 minutes=$5 stamp version start
  stamp=$(stamp_of "$dir")
  version=$(module_version "$dir" "$vmod")
  if fresh "$name" "$stamp"; then
    echo "engine: $name $version ready"
    return
  fi
  echo "engine: building $name $version from its Go modules (first time only, ~$minutes min on 2 cores)"
  start=$SECONDS
  (cd "$dir" && go build -trimpath -tags "$TAGS" \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version" \
    -o "$BIN/$name.tmp" "$pkg")
  mv "$BIN/$name.tmp" "$BIN/$name"
  echo "$stamp" >"$STAMPS/$name"
  echo "engine: built $name in $((SECONDS - start)) s"
}

# install_script NAME MODULE_DIR MODULE PATH_IN_ZIP: a script shipped inside a module zip (zips drop the run bit)
install_script() {
  local src
  src=$(module_dir "$ROOT/$2" "$3")/$4
  install -m 0755 "$src" "$BIN/$1"
}

build pulumi tools/engine github.com/pulumi/pulumi/pkg/v3/cmd/pulumi github.com/pulumi/pulumi/pkg/v3 7
install_script pulumi-resource-pulumi-python tools/engine github.com/pulumi/pulumi/sdk/v3 python/dist/pulumi-resource-pulumi-python
# The language host: its own module (sdk/python/cmd/pulumi-language-python/v3) is refused by the Go module proxy
# here (403 "This module version is not available", every pseudo-version tried); the last release that ships the
# host inside sdk/v3 itself (sdk/v3 v3.79.0) is served and speaks the same language-host protocol (README, "The
# Pulumi engine").
build pulumi-language-python tools/langhost github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python \
  github.com/pulumi/pulumi/sdk/v3 1
install_script pulumi-language-python-exec tools/langhost github.com/pulumi/pulumi/sdk/v3 python/cmd/pulumi-language-python-exec

# pulumi-resource-vsphere: the provider module (no provider/ tags: the v4.17.0 release commit as a pseudo-version)
# and terraform-provider-vsphere at the submodule commit it replaces to ../upstream.
VSPHERE_VERSION=4.17.0
VSPHERE_PROVIDER=github.com/pulumi/pulumi-vsphere/provider/v4@v4.0.0-20260625190743-0b74d8ac36b5
VSPHERE_UPSTREAM=github.com/vmware/terraform-provider-vsphere@v0.0.0-20260610071342-6e5d67ea56c6
UNAVAILABLE=$ROOT/.tools/pulumi-resource-vsphere.unavailable
# probe MODULE@VERSION: "Dir <path>" when the proxy serves it, else "Error <the go command's error>"
probe() { { go mod download -json "$1" 2>/dev/null || true; } | sed -n 's/^\t"\(Dir\|Error\)": "\(.*\)",\{0,1\}$/\1 \2/p' | head -1; }
if [[ -x $BIN/pulumi-resource-vsphere ]]; then
  echo "engine: pulumi-resource-vsphere $VSPHERE_VERSION ready"
else
  provider=$(probe "$VSPHERE_PROVIDER")
  upstream=$(probe "$VSPHERE_UPSTREAM")
  if [[ $provider == Dir\ * && $upstream == Dir\ * ]]; then
    echo "engine: building pulumi-resource-vsphere $VSPHERE_VERSION from its Go modules (first time only, ~25 min)"
    work=$ROOT/.tools/vsphere-src
    rm -rf "$work" && mkdir -p "$work"
    cp -r "${provider#Dir }" "$work/provider" && cp -r "${upstream#Dir }" "$work/upstream" && chmod -R u+w "$work"
    (cd "$work/provider/cmd/pulumi-resource-vsphere" && VERSION=$VSPHERE_VERSION go run ./generate.go)
    (cd "$work/provider" && go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi-vsphere/provider/v4/pkg/version.Version=$VSPHERE_VERSION" \
      -o "$BIN/pulumi-resource-vsphere" ./cmd/pulumi-resource-vsphere)
    rm -f "$UNAVAILABLE"
  else
    reason=${provider#Error }
    [[ $provider == Dir\ * ]] && reason=${upstream#Error }
    reason=${reason//\\n\\t/ }
    printf '%s\n' "$reason" >"$UNAVAILABLE"
    echo "engine: pulumi-resource-vsphere $VSPHERE_VERSION cannot be built here: $reason"
  fi
fi
