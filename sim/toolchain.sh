#!/usr/bin/env bash
# Toolchain for the e2e tier: the Pulumi CLI, the Node.js language host, the Kubernetes provider
# plugin, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok.
#
#   bash sim/toolchain.sh            build what is missing, print where each binary is
#   eval "$(bash sim/toolchain.sh --env)"   same, then export PATH (logs go to stderr)
#   bash sim/toolchain.sh --only pulumi,etcd   build only these
#
# A binary already on PATH is used when its version fits. Otherwise it is built from the Go module
# proxy into ${COT_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cot-vr-e2e}/<tool>-<version>/bin,
# so only the first run on a machine pays for the build. Nothing is written into the repository.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${COT_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cot-vr-e2e}"
mkdir -p "$CACHE"

# ---- versions ---------------------------------------------------------------------------------
# The Pulumi CLI and SDK versions follow package-lock.json (@pulumi/pulumi, @pulumi/kubernetes).
REPO_ROOT="$(cd "$HERE/.." && pwd)"
lockver() { node -e 'const l=require(process.argv[1]);process.stdout.write(l.packages["node_modules/"+process.argv[2]].version)' "$REPO_ROOT/package-lock.json" "$1"; }
PULUMI_VERSION="${PULUMI_VERSION:-$(lockver @pulumi/pulumi)}"
K8S_PROVIDER_VERSION="${K8S_PROVIDER_VERSION:-$(lockver @pulumi/kubernetes)}"
# The pulumi/pulumi commit of the pkg/v3 tag (the language host module has no tags of its own).
PULUMI_COMMIT_PSEUDO="${PULUMI_COMMIT_PSEUDO:-v3.0.0-20260624180030-dc7edd58bc13}"
# provider/v4 has no tags: the pseudo-version of the commit to build. See versions.env.
source "$HERE/versions.env"

KUBE_VERSION="${KUBE_VERSION:-$KUBE_VERSION_DEFAULT}"
ETCD_VERSION="${ETCD_VERSION:-$ETCD_VERSION_DEFAULT}"
KWOK_VERSION="${KWOK_VERSION:-$KWOK_VERSION_DEFAULT}"

log() { printf '[toolchain] %s\n' "$*" >&2; }
die() { printf '[toolchain] ERROR: %s\n' "$*" >&2; exit 1; }

export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0
GOBUILD=(go build -trimpath)
NICE=(nice -n 10)

# run a build step under a lock, logging its output to <dir>/build.log, timing it
built_ok() { [[ -f "$1/.ok" ]]; }
with_lock() { # dir cmd...
  local dir="$1"; shift
  mkdir -p "$dir"
  exec {lockfd}>"$dir.lock"
  flock "$lockfd"
  if built_ok "$dir"; then exec {lockfd}>&-; return 0; fi
  local t0=$SECONDS
  if ! ( "$@" ) >"$dir.build.log" 2>&1; then
    tail -n 40 "$dir.build.log" >&2
    exec {lockfd}>&-
    die "build failed: $dir (log: $dir.build.log)"
  fi
  echo "$((SECONDS - t0))" >"$dir/.build-seconds"
  touch "$dir/.ok"
  exec {lockfd}>&-
  log "built $(basename "$dir") in $((SECONDS - t0))s"
}

# ---- Pulumi CLI + Node.js language host ---------------------------------------------------------
build_pulumi() {
  local dir="$1" src="$1/src"
  mkdir -p "$src/cli" "$dir/bin"
  cd "$src/cli"
  cat >go.mod <<EOF
module cotvr.local/pulumi-cli

go 1.25

require (
	github.com/pulumi/pulumi/pkg/v3 v$PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION
)

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
EOF
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"\n' >tools.go
  go mod tidy
  "${NICE[@]}" "${GOBUILD[@]}" -tags osusergo,grpcnotrace \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
    -o "$dir/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
}

build_langhost() {
  local dir="$1" src="$1/src"
  mkdir -p "$src" "$dir/bin"
  cd "$src"
  if [[ "$LANGHOST_SOURCE" == upstream ]]; then
    cat >go.mod <<EOF
module cotvr.local/pulumi-language-nodejs

go 1.25

require (
	github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3 $PULUMI_COMMIT_PSEUDO
	github.com/pulumi/pulumi/pkg/v3 v$PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION
)
EOF
    printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3"\n' >tools.go
    go mod tidy
    "${NICE[@]}" "${GOBUILD[@]}" -tags osusergo,grpcnotrace \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
      -o "$dir/bin/pulumi-language-nodejs" github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3
  else
    # The upstream module is not served by the Go module proxy here: build the small language
    # host that lives in this repository (sim/langhost), against the same sdk/v3.
    rm -rf "$src"/*
    cp "$HERE"/langhost/*.go "$src"/
    cat >go.mod <<EOF
module cotvr.local/pulumi-language-nodejs

go 1.25

require github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION
EOF
    go mod tidy
    "${NICE[@]}" "${GOBUILD[@]}" -ldflags "-s -w" -o "$dir/bin/pulumi-language-nodejs" .
  fi
}

# ---- Kubernetes provider -----------------------------------------------------------------------
build_provider() {
  local dir="$1" src="$1/src"
  mkdir -p "$src" "$dir/bin"
  cd "$src"
  local mod="github.com/pulumi/pulumi-kubernetes/provider/v4@$K8S_PROVIDER_PSEUDO"
  local moddir
  moddir="$(GOFLAGS=-mod=mod go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$moddir" ]] || die "go mod download $mod gave no directory"
  rm -rf "$src/provider"
  cp -r "$moddir" "$src/provider"
  chmod -R u+w "$src/provider"
  # go.mod replaces sdk/v4 with ../sdk, and the provider imports the SDK's Go packages
  # (yaml/v2, helm/v4), so a stub will not do: use the sdk/v4 module from the proxy instead.
  (cd "$src/provider" && go mod edit -dropreplace github.com/pulumi/pulumi-kubernetes/sdk/v4 \
    -require "github.com/pulumi/pulumi-kubernetes/sdk/v4@$K8S_PROVIDER_SDK_VERSION")
  cd "$src/provider"
  # The embedded schema files are generated from the committed schema.json: what its `go generate`
  # (cmd/pulumi-resource-kubernetes/generate.go) does, set the version and re-serialise, done with
  # node, which spares compiling pulumi/pkg's codegen at the provider's older version.
  (cd cmd/pulumi-resource-kubernetes && VERSION="$K8S_PROVIDER_BUILD_LABEL" node -e '
    const fs = require("fs");
    const s = JSON.parse(fs.readFileSync("schema.json", "utf8"));
    s.version = process.env.VERSION;
    fs.writeFileSync("schema-embed.json", JSON.stringify(s));
    fs.writeFileSync("terraform-mapping-embed.json", JSON.stringify(JSON.parse(fs.readFileSync("terraform-mapping.json", "utf8"))));')
  GOFLAGS="$GOFLAGS -mod=mod" "${NICE[@]}" "${GOBUILD[@]}" \
    -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$K8S_PROVIDER_BUILD_LABEL" \
    -o "$dir/bin/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes
}

# ---- Kubernetes control plane + kubectl --------------------------------------------------------
build_kube() {
  local dir="$1" src="$1/src" v="$KUBE_VERSION"
  local minor="${v#v1.}"; minor="${minor%%.*}"
  local staging="v0.${v#v1.}"
  mkdir -p "$src" "$dir/bin"
  cd "$src"
  # k8s.io/kubernetes replaces its staging modules with ./staging/...: replace each with v0.x.y.
  curl -fsSL "${GOPROXY_URL:-https://proxy.golang.org}/k8s.io/kubernetes/@v/$v.mod" -o upstream.mod \
    || GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$v" >/dev/null
  [[ -s upstream.mod ]] || cp "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$v.mod" upstream.mod
  {
    printf 'module cotvr.local/kube\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$v"
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' upstream.mod \
      | awk -v s="$staging" '{print "\t" $1 " => " $1 " " s}'
    printf ')\n'
  } >go.mod
  cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
  go mod tidy
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    local t0=$SECONDS
    "${NICE[@]}" "${GOBUILD[@]}" -tags providerless -ldflags "$ld" -o "$dir/bin/$c" "k8s.io/kubernetes/cmd/$c"
    echo "$c $((SECONDS - t0))s"
  done
}

# ---- etcd --------------------------------------------------------------------------------------
build_etcd() {
  local dir="$1" src="$1/src"
  mkdir -p "$src" "$dir/bin"
  cd "$src"
  cat >go.mod <<EOF
module cotvr.local/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
  cat >main.go <<'EOF'
// etcd, built from go.etcd.io/etcd/server/v3 (the same entry point as etcd's own main).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  go mod tidy
  "${NICE[@]}" "${GOBUILD[@]}" -ldflags "-s -w" -o "$dir/bin/etcd" .
}

# ---- kwok --------------------------------------------------------------------------------------
build_kwok() {
  local dir="$1"
  mkdir -p "$dir/bin"
  GOBIN="$dir/bin" "${NICE[@]}" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

# ---- version checks for binaries already on PATH ------------------------------------------------
path_fits() { # tool
  local b out
  case "$1" in
    pulumi) b=$(command -v pulumi) || return 1; out=$("$b" version 2>/dev/null) || return 1; [[ "$out" == "v$PULUMI_VERSION" ]] ;;
    langhost) b=$(command -v pulumi-language-nodejs) || return 1; [[ "$(command -v pulumi)" == "$(dirname "$b")/pulumi" ]] && path_fits pulumi ;;
    provider) b=$(command -v pulumi-resource-kubernetes) || return 1
              # no --version flag: read the version of the schema the binary embeds
              grep -aqF "\"version\":\"$K8S_PROVIDER_VERSION\"" "$b" || grep -aqF "\"version\":\"$K8S_PROVIDER_BUILD_LABEL\"" "$b" ;;
    kube) local c; for c in kube-apiserver kube-controller-manager kube-scheduler; do
            b=$(command -v $c) || return 1; out=$("$b" --version 2>/dev/null) || return 1; [[ "$out" == *"$KUBE_VERSION" ]] || return 1
          done
          b=$(command -v kubectl) || return 1; out=$("$b" version --client 2>/dev/null) || return 1; [[ "$out" == *"Client Version: $KUBE_VERSION"* ]] ;;
    etcd) b=$(command -v etcd) || return 1; out=$("$b" --version 2>/dev/null) || return 1; [[ "$out" =~ etcd\ Version:\ 3\.([5-9]|[1-9][0-9])\. ]] ;;
    kwok) b=$(command -v kwok) || return 1; out=$("$b" --version 2>/dev/null) || return 1; [[ "$out" == *"${KWOK_VERSION#v}"* ]] ;;
  esac
}

tool_dir() {
  case "$1" in
    pulumi) echo "$CACHE/pulumi-$PULUMI_VERSION" ;;
    langhost) echo "$CACHE/pulumi-language-nodejs-$PULUMI_VERSION-$LANGHOST_SOURCE" ;;
    provider) echo "$CACHE/pulumi-resource-kubernetes-$K8S_PROVIDER_BUILD_LABEL" ;;
    kube) echo "$CACHE/kubernetes-$KUBE_VERSION" ;;
    etcd) echo "$CACHE/etcd-$ETCD_VERSION" ;;
    kwok) echo "$CACHE/kwok-$KWOK_VERSION" ;;
  esac
}

ALL_TOOLS=(pulumi langhost provider etcd kwok kube)
want=("${ALL_TOOLS[@]}")
mode=print
while [[ $# -gt 0 ]]; do
  case "$1" in
    --env) mode=env ;;
    --only) IFS=, read -r -a want <<<"$2"; shift ;;
    *) die "unknown argument $1" ;;
  esac
  shift
done

command -v go >/dev/null || die "Go is needed to build the e2e toolchain (none of the tools is on PATH at a fitting version)"
paths=()
for t in "${want[@]}"; do
  if path_fits "$t"; then
    log "$t: using PATH"
    continue
  fi
  # A Pulumi installation keeps the provider among its plugins, not on PATH.
  plug="${PULUMI_HOME:-$HOME/.pulumi}/plugins/resource-kubernetes-v$K8S_PROVIDER_VERSION"
  if [[ "$t" == provider && -x "$plug/pulumi-resource-kubernetes" ]]; then
    log "provider: using $plug"
    paths+=("$plug")
    continue
  fi
  d=$(tool_dir "$t")
  if ! built_ok "$d"; then
    log "$t: building into $d (cold build; see $d.build.log)"
    with_lock "$d" "build_$t" "$d"
  fi
  paths+=("$d/bin")
done

# The engine looks for the language host beside the pulumi binary first (no "from $PATH" warning).
pl="$(tool_dir pulumi)/bin"; lh="$(tool_dir langhost)/bin/pulumi-language-nodejs"
# -f: another run on the machine may link it between the test and the link (both link the same host).
if [[ -x "$pl/pulumi" && -x "$lh" && ! -e "$pl/pulumi-language-nodejs" ]]; then ln -sf "$lh" "$pl/pulumi-language-nodejs"; fi

newpath=$(IFS=:; echo "${paths[*]}")
if [[ "$mode" == env ]]; then
  [[ -n "$newpath" ]] && printf 'export PATH=%q\n' "$newpath:$PATH"
  printf 'export COT_E2E_CACHE=%q\n' "$CACHE"
else
  export PATH="${newpath:+$newpath:}$PATH"
  for b in pulumi pulumi-language-nodejs pulumi-resource-kubernetes etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
    printf '%-28s %s\n' "$b" "$(command -v "$b" || echo MISSING)"
  done
fi
