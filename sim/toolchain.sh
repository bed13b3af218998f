#!/usr/bin/env bash
# Toolchain for the e2e tier: the Pulumi CLI, the Node.js language host, the Kubernetes provider
# plugin, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok; with
# `--only node`, the pods tier's real node: kubelet, kube-proxy, crictl, CoreDNS and pause (built only).
#
#   bash sim/toolchain.sh            install what is missing, print where each binary is
#   eval "$(bash sim/toolchain.sh --env)"   same, then export PATH (logs go to stderr)
#   bash sim/toolchain.sh --only pulumi,etcd   install only these
#
# A binary already on PATH is used when its version fits, and a tool already in the cache
# ${COT_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cot-vr-e2e}/<tool>-<version>/bin (with .ok) as it is:
# neither touches the network. A missing tool is downloaded (the pinned official release, checked
# against its published sha256 and any pin in versions.env) or built from the Go module proxy:
#   COT_SIM_DOWNLOAD=auto     (default) try the download, build on any failure
#   COT_SIM_DOWNLOAD=always|1 download or fail
#   COT_SIM_DOWNLOAD=never|0  build only
# Base URLs: COT_SIM_PULUMI_BASE (https://get.pulumi.com), COT_SIM_GITHUB_BASE (https://github.com),
# COT_SIM_K8S_BASE (https://dl.k8s.io). Nothing is written into the repository.
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
CRICTL_VERSION="${CRICTL_VERSION:-$CRICTL_VERSION_DEFAULT}"
COREDNS_VERSION="${COREDNS_VERSION:-$COREDNS_VERSION_DEFAULT}"

log() { printf '[toolchain] %s\n' "$*" >&2; }
die() { printf '[toolchain] ERROR: %s\n' "$*" >&2; exit 1; }

case "${COT_SIM_DOWNLOAD:-auto}" in
  auto) DL=auto ;;
  1|always) DL=always ;;
  0|never) DL=never ;;
  *) die "COT_SIM_DOWNLOAD=$COT_SIM_DOWNLOAD: use auto, always (1) or never (0)" ;;
esac
PULUMI_BASE="${COT_SIM_PULUMI_BASE:-https://get.pulumi.com}"
GITHUB_BASE="${COT_SIM_GITHUB_BASE:-https://github.com}"
K8S_BASE="${COT_SIM_K8S_BASE:-https://dl.k8s.io}"

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
  echo build >"$dir/.source"
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
# k8s.io/kubernetes as a dependency: a wrapper module whose go.mod replaces each staging module
# (./staging/... upstream) with its published v0.x.y.
kube_wrapper_mod() { # version
  local v="$1" staging="v0.${1#v1.}"
  curl -fsSL "${GOPROXY_URL:-https://proxy.golang.org}/k8s.io/kubernetes/@v/$v.mod" -o upstream.mod \
    || GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$v" >/dev/null
  [[ -s upstream.mod ]] || cp "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$v.mod" upstream.mod
  {
    printf 'module cotvr.local/kube\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$v"
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' upstream.mod \
      | awk -v s="$staging" '{print "\t" $1 " => " $1 " " s}'
    printf ')\n'
  } >go.mod
}
kube_ldflags() { # version
  local v="$1" minor="${1#v1.}"; minor="${minor%%.*}"
  echo "-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
}
kube_tools_go() { # cmd...
  printf '//go:build tools\n\npackage tools\n\nimport (\n'
  local c; for c in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
  printf ')\n'
}

build_kube() {
  local dir="$1" src="$1/src" v="$KUBE_VERSION"
  mkdir -p "$src" "$dir/bin"
  cd "$src"
  kube_wrapper_mod "$v"
  kube_tools_go kube-apiserver kube-controller-manager kube-scheduler kubectl >tools.go
  go mod tidy
  local ld c; ld="$(kube_ldflags "$v")"
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    local t0=$SECONDS
    "${NICE[@]}" "${GOBUILD[@]}" -tags providerless -ldflags "$ld" -o "$dir/bin/$c" "k8s.io/kubernetes/cmd/$c"
    echo "$c $((SECONDS - t0))s"
  done
}

# ---- a real node (the pods tier only): kubelet, kube-proxy, crictl, CoreDNS, pause ---------------
build_node() {
  local dir="$1" src="$1/src" v="$KUBE_VERSION" t0 c ld
  mkdir -p "$src/kube" "$src/crictl" "$src/coredns" "$dir/bin"
  cd "$src/kube"
  kube_wrapper_mod "$v"
  kube_tools_go kubelet kube-proxy >tools.go
  go mod tidy
  ld="$(kube_ldflags "$v")"
  for c in kubelet kube-proxy; do
    t0=$SECONDS
    "${NICE[@]}" "${GOBUILD[@]}" -tags providerless -ldflags "$ld" -o "$dir/bin/$c" "k8s.io/kubernetes/cmd/$c"
    echo "$c $((SECONDS - t0))s"
  done
  # pause: the sandbox image's only binary, from the same Kubernetes module (build/pause/linux).
  local kmod; kmod="$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)"
  gcc -Os -static -Wall -Werror -DVERSION="$v-cotvr" -o "$dir/bin/pause" "$kmod/build/pause/linux/pause.c"
  strip "$dir/bin/pause"

  cd "$src/crictl"
  printf 'module cotvr.local/crictl\n\ngo 1.24\n\nrequire sigs.k8s.io/cri-tools %s\n' "$CRICTL_VERSION" >go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "sigs.k8s.io/cri-tools/cmd/crictl"\n' >tools.go
  go mod tidy
  "${NICE[@]}" "${GOBUILD[@]}" -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    -o "$dir/bin/crictl" sigs.k8s.io/cri-tools/cmd/crictl

  # CoreDNS with the plugins of the kubeadm Corefile only (upstream's plugin.cfg way of trimming).
  cd "$src/coredns"
  printf 'module cotvr.local/coredns\n\ngo 1.24\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION" >go.mod
  cp "$HERE/node/coredns.go" main.go
  go mod tidy
  "${NICE[@]}" "${GOBUILD[@]}" -ldflags "-s -w" -o "$dir/bin/coredns" .
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

# ---- official release binaries -----------------------------------------------------------------
# Layouts and checksum files: docs/FACTS.md "Toolchain downloads". Each file is checked against the
# published checksum (fetched from the same host) and against its pin in versions.env when there is
# one; a missing or different checksum refuses the file (deleted; `auto` then builds).
case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) OS=linux ARCH=amd64 PULUMI_ARCH=x64 ;;
  Linux/aarch64|Linux/arm64) OS=linux ARCH=arm64 PULUMI_ARCH=arm64 ;;
  *) OS="" ARCH="" PULUMI_ARCH="" ;;  # no official kube-apiserver etc. for other systems
esac
DLTMP=""  # this run's verified downloads (the Pulumi tarball serves pulumi and the language host)

sha256_of() { if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | awk '{print $1}'; }

dl_get() { # url out
  local rc=0
  command -v curl >/dev/null || { log "curl is not installed: cannot download $1"; return 1; }
  curl -fsSL --connect-timeout "${COT_SIM_CONNECT_TIMEOUT:-10}" --max-time "${COT_SIM_MAX_TIME:-300}" \
    --speed-limit 10000 --speed-time 30 -o "$2" "$1" || rc=$?
  [[ $rc == 0 ]] && return 0
  rm -f "$2"
  # cannot resolve / connect / timed out: no network, so the other tools do not try either
  case $rc in 6|7|28) touch "$DLTMP/offline" ;; esac
  log "download failed (curl exit $rc): $1"
  return 1
}

# fetch_once URL SUMS_URL ENTRY KEY: URL into $DLTMP, verified. SUMS_URL is the published checksum
# file ("" when none is published), ENTRY the file's name in it ("" when it holds the hash alone),
# KEY names the pin in versions.env: SHA256_<KEY with each non-alphanumeric as _>.
fetch_once() {
  local url="$1" sums="$2" entry="$3" key="$4" f pinvar pin published="" got
  f="$DLTMP/$(basename "$url")"
  [[ -f "$f" ]] && return 0
  pinvar="SHA256_${key//[^A-Za-z0-9]/_}"; pin="${!pinvar:-}"
  log "downloading $url"
  dl_get "$url" "$f.part" || return 1
  if [[ -n "$sums" ]] && dl_get "$sums" "$f.sums"; then
    if [[ -n "$entry" ]]; then
      published=$(awk -v n="$entry" '{ f = $2; sub(/^\*/, "", f) } f == n { print $1; exit }' "$f.sums")
    else
      published=$(awk 'NR == 1 { print $1 }' "$f.sums")
    fi
    rm -f "$f.sums"
  fi
  got=$(sha256_of "$f.part")
  if [[ -z "$pin" && -z "$published" ]]; then
    rm -f "$f.part"
    log "refused $(basename "$url"): no published checksum${sums:+ for it in $sums} and no $pinvar in versions.env"
    return 1
  fi
  if [[ -n "$pin" && "$got" != "$pin" ]] || [[ -n "$published" && "$got" != "$published" ]]; then
    rm -f "$f.part"
    log "refused $(basename "$url"): sha256 $got does not match ${pin:+the pinned $pin}${pin:+${published:+ / }}${published:+the published $published}"
    return 1
  fi
  mv "$f.part" "$f" || return 1
  log "verified $(basename "$url") (sha256 ${pin:+pinned}${pin:+${published:+ and }}${published:+published})"
}

untar_one() { # tarball member out
  tar -xzf "$1" -O "$2" >"$3.part" 2>/dev/null && [[ -s "$3.part" ]] \
    || { rm -f "$3.part"; log "$(basename "$1") has no $2"; return 1; }
  chmod 0755 "$3.part" && mv "$3.part" "$3"
}

pulumi_tarball() {
  PULUMI_TGZ="pulumi-v$PULUMI_VERSION-$OS-$PULUMI_ARCH.tar.gz"
  fetch_once "$PULUMI_BASE/releases/sdk/$PULUMI_TGZ" "$PULUMI_BASE/releases/sdk/pulumi-$PULUMI_VERSION-checksums.txt" \
    "$PULUMI_TGZ" "$PULUMI_TGZ"
}
download_pulumi() { pulumi_tarball && untar_one "$DLTMP/$PULUMI_TGZ" pulumi/pulumi "$1/pulumi"; }
download_langhost() { pulumi_tarball && untar_one "$DLTMP/$PULUMI_TGZ" pulumi/pulumi-language-nodejs "$1/pulumi-language-nodejs"; }

download_provider() { # the real release, at the lockfile's version
  local v="$K8S_PROVIDER_VERSION" f rel
  f="pulumi-resource-kubernetes-v$v-$OS-$ARCH.tar.gz"
  rel="$GITHUB_BASE/pulumi/pulumi-kubernetes/releases/download/v$v"
  fetch_once "$rel/$f" "$rel/pulumi-kubernetes_${v}_checksums.txt" "$f" "$f" \
    && untar_one "$DLTMP/$f" pulumi-resource-kubernetes "$1/pulumi-resource-kubernetes"
}

download_etcd() {
  local n="etcd-$ETCD_VERSION-$OS-$ARCH" rel="$GITHUB_BASE/etcd-io/etcd/releases/download/$ETCD_VERSION"
  fetch_once "$rel/$n.tar.gz" "$rel/SHA256SUMS" "$n.tar.gz" "$n.tar.gz" && untar_one "$DLTMP/$n.tar.gz" "$n/etcd" "$1/etcd"
}

download_kube() {
  local c base="$K8S_BASE/$KUBE_VERSION/bin/$OS/$ARCH"
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    fetch_once "$base/$c" "$base/$c.sha256" "" "$c-$KUBE_VERSION-$OS-$ARCH" || return 1
    chmod 0755 "$DLTMP/$c" && mv "$DLTMP/$c" "$1/$c" || return 1
  done
}

download_kwok() { # no checksum file is published: only a pin in versions.env lets it through
  local f="kwok-$OS-$ARCH"
  fetch_once "$GITHUB_BASE/kubernetes-sigs/kwok/releases/download/$KWOK_VERSION/$f" "" "" "kwok-$KWOK_VERSION-$OS-$ARCH" \
    && chmod 0755 "$DLTMP/$f" && mv "$DLTMP/$f" "$1/kwok"
}

# Install the official release of a tool into dir/bin under the tool's lock; 1 on any failure, with
# nothing left in dir/bin and no .ok.
try_download() { # tool dir
  local t="$1" dir="$2" rc=0 t0=$SECONDS lockfd
  if [[ -z "$OS" ]]; then log "$t: no official binaries for $(uname -s)/$(uname -m)"; return 1; fi
  if [[ -e "$DLTMP/offline" ]]; then log "$t: not downloading (an earlier download found no network)"; return 1; fi
  mkdir -p "$dir"
  exec {lockfd}>"$dir.lock"
  flock "$lockfd"
  if built_ok "$dir"; then exec {lockfd}>&-; return 0; fi
  rm -rf "$dir/bin" && mkdir -p "$dir/bin"
  ( "download_$t" "$dir/bin" ) || rc=$?
  if [[ $rc == 0 ]]; then
    echo release >"$dir/.source"
    touch "$dir/.ok"
    log "$t: downloaded into $dir in $((SECONDS - t0))s"
  else
    rm -rf "$dir/bin"
  fi
  exec {lockfd}>&-
  return "$rc"
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
    node) return 1 ;;  # always the cached build: its binaries must match one another
    kwok) b=$(command -v kwok) || return 1; out=$("$b" --version 2>/dev/null) || return 1; [[ "$out" == *"${KWOK_VERSION#v}"* ]] ;;
  esac
}

# Cache dirs of a tool: the official release's first, then the build's where it differs (the built
# provider is not 4.34.2 and is labelled so; the release's language host is the upstream one).
tool_dirs() {
  case "$1" in
    pulumi) echo "$CACHE/pulumi-$PULUMI_VERSION" ;;
    langhost) echo "$CACHE/pulumi-language-nodejs-$PULUMI_VERSION-release"
              echo "$CACHE/pulumi-language-nodejs-$PULUMI_VERSION-$LANGHOST_SOURCE" ;;
    provider) echo "$CACHE/pulumi-resource-kubernetes-$K8S_PROVIDER_VERSION"
              [[ "$K8S_PROVIDER_BUILD_LABEL" == "$K8S_PROVIDER_VERSION" ]] || echo "$CACHE/pulumi-resource-kubernetes-$K8S_PROVIDER_BUILD_LABEL" ;;
    kube) echo "$CACHE/kubernetes-$KUBE_VERSION" ;;
    node) echo "$CACHE/node-$KUBE_VERSION-crictl-$CRICTL_VERSION-coredns-$COREDNS_VERSION" ;;
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

paths=()
langhost_dir=""
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
  mapfile -t dirs < <(tool_dirs "$t")
  d=""
  # A cached tool is used as it is: the network is only tried for a missing one.
  for c in "${dirs[@]}"; do if built_ok "$c"; then d="$c"; break; fi; done
  if [[ -z "$d" && "$DL" != never && "$t" != node ]]; then  # node: no release to download, built
    [[ -n "$DLTMP" ]] || { DLTMP=$(mktemp -d "$CACHE/.download.XXXXXX"); trap 'rm -rf "$DLTMP"' EXIT; }
    if try_download "$t" "${dirs[0]}"; then
      d="${dirs[0]}"
    elif [[ "$DL" == always ]]; then
      die "$t: COT_SIM_DOWNLOAD=$COT_SIM_DOWNLOAD and the download failed (see above); COT_SIM_DOWNLOAD=auto builds instead"
    else
      log "$t: download failed, falling back to building from the Go module proxy"
    fi
  fi
  if [[ -z "$d" ]]; then
    d="${dirs[${#dirs[@]}-1]}"
    if ! built_ok "$d"; then
      command -v go >/dev/null || die "Go is needed to build $t (not on PATH at a fitting version, not downloaded)"
      log "$t: building into $d (cold build; see $d.build.log)"
      with_lock "$d" "build_$t" "$d"
    fi
  fi
  [[ "$t" == langhost ]] && langhost_dir="$d"
  paths+=("$d/bin")
done

# The engine looks for the language host beside the pulumi binary first (no "from $PATH" warning).
if [[ -z "$langhost_dir" ]]; then
  while read -r c; do if built_ok "$c"; then langhost_dir="$c"; break; fi; done < <(tool_dirs langhost)
fi
pl="$(tool_dirs pulumi)/bin"; lh="$langhost_dir/bin/pulumi-language-nodejs"
# -f: another run on the machine may link it between the test and the link (both link the same host).
if [[ -x "$pl/pulumi" && -x "$lh" && ! -e "$pl/pulumi-language-nodejs" ]]; then ln -sf "$lh" "$pl/pulumi-language-nodejs"; fi

newpath=$(IFS=:; echo "${paths[*]}")
if [[ "$mode" == env ]]; then
  [[ -n "$newpath" ]] && printf 'export PATH=%q\n' "$newpath:$PATH"
  printf 'export COT_E2E_CACHE=%q\n' "$CACHE"
else
  export PATH="${newpath:+$newpath:}$PATH"
  bins=(pulumi pulumi-language-nodejs pulumi-resource-kubernetes etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)
  [[ " ${want[*]} " == *" node "* ]] && bins=(kubelet kube-proxy crictl coredns pause)
  for b in "${bins[@]}"; do
    printf '%-28s %s\n' "$b" "$(command -v "$b" || echo MISSING)"
  done
fi
