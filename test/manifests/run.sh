#!/usr/bin/env bash
# Third-party checks of the rendered manifests of every shipped stack (stacks/Pulumi.<stack>.yaml):
#   - kubeconform (Go module github.com/yannh/kubeconform), strict, offline, against the Kubernetes
#     1.34 JSON schemas of the PyPI package kubernetes-validate (made standalone by schemas.py);
#     no skips: every object must have a schema and pass it.
#   - checkov (PyPI) --framework kubernetes; findings.py fails on any finding that neither
#     skip-list.txt (not applicable, with reasons) excuses,
#     and on list entries that match nothing any more.
# Before judging the stacks it proves that both gates can fail: a schema violation
# (fixtures/schema-violation.yaml) and new findings (fixtures/new-finding.yaml) must be reported.
#
#   bash test/manifests/run.sh           run the checks (installs into the cache on first use)
#   bash test/manifests/run.sh --list    also print every checkov finding with its verdict
#   bash test/manifests/run.sh --lock    re-resolve requirements.txt from requirements.in
#
# Everything installed lives in ${XDG_CACHE_HOME:-$HOME/.cache}/cot-vr-manifests/, keyed by the lock
# file, the interpreter, uv's and kubeconform's versions, so a second run installs nothing.
# A caller may set COTVR_RENDER_DIR to stacks it rendered itself (one folder per stack).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/test/manifests"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/cot-vr-manifests"
UV_VERSION=0.13.9
KUBECONFORM_VERSION=v0.8.0
KUBE_VERSION=1.34.0
PY="${COTVR_PYTHON:-$(command -v python3.11 || command -v python3)}"
export UV_CACHE_DIR="$CACHE/uv-cache" UV_NO_PROGRESS=1 UV_PYTHON_DOWNLOADS=never
mkdir -p "$CACHE"
log() { printf '[test:manifests] %s\n' "$*" >&2; }
LIST=
case "${1:-}" in
    --list) LIST=--list ;;
    --lock|"") ;;
    *) echo "usage: $0 [--list|--lock]" >&2; exit 2 ;;
esac
t0=$SECONDS

source "$(dirname "${BASH_SOURCE[0]}")/../lib/uv.sh"

if [ "${1:-}" = "--lock" ]; then
    exec "$UV" pip compile "$HERE/requirements.in" --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
        --no-header -o "$HERE/requirements.txt"
fi

KEY=$( { cat "$HERE/requirements.txt" "$HERE/schemas.py"; "$PY" -c 'import sys; print(sys.version)'; echo "uv $UV_VERSION k8s $KUBE_VERSION"; } | sha256sum | cut -c1-16)
VENV="$CACHE/venv-$KEY"
SCHEMAS="$VENV/schemas/v$KUBE_VERSION-standalone-strict"
KUBECONFORM="$CACHE/kubeconform-$KUBECONFORM_VERSION/bin/kubeconform"
(
    flock 9
    if [ ! -f "$VENV/.complete" ]; then
        log "creating $VENV (checkov, kubernetes-validate)"
        start=$SECONDS
        rm -rf "$VENV"
        "$UV" venv --quiet --python "$PY" "$VENV"
        "$UV" pip sync --quiet --python "$VENV/bin/python" "$HERE/requirements.txt"
        "$VENV/bin/python" "$HERE/schemas.py" "$KUBE_VERSION" "$SCHEMAS"
        touch "$VENV/.complete"
        log "venv and schemas ready in $((SECONDS - start))s"
        for old in "$CACHE"/venv-*; do
            if [ "$old" != "$VENV" ] && [ -d "$old" ]; then rm -rf "$old"; log "removed old venv $old"; fi
        done
    fi
    if [ ! -x "$KUBECONFORM" ]; then
        # Built from the Go module proxy; its module and build caches are thrown away after.
        command -v go >/dev/null || { log "kubeconform is built with Go (>= 1.26, or a toolchain the Go proxy serves): no go on PATH"; exit 1; }
        log "building kubeconform $KUBECONFORM_VERSION"
        start=$SECONDS
        tmp="$CACHE/kubeconform-$KUBECONFORM_VERSION.tmp"
        rm -rf "$tmp" "$CACHE/kubeconform-$KUBECONFORM_VERSION"
        mkdir -p "$tmp"
        GOMODCACHE="$tmp/mod" GOCACHE="$tmp/build" GOBIN="$tmp/bin" GOFLAGS=-modcacherw CGO_ENABLED=0 \
            go install -trimpath -ldflags=-s "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
        mkdir -p "$(dirname "$KUBECONFORM")"
        mv "$tmp/bin/kubeconform" "$KUBECONFORM"
        rm -rf "$tmp"
        log "kubeconform built in $((SECONDS - start))s"
    fi
) 9>"$CACHE/.lock"
t_install=$((SECONDS - t0))

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
RENDER="${COTVR_RENDER_DIR:-$WORK/render}"
STACKS=()
shopt -s nullglob
for stack_file in "$ROOT"/stacks/Pulumi.*.yaml; do
    stack=$(basename "$stack_file" .yaml); STACKS+=("${stack#Pulumi.}")
done
[ ${#STACKS[@]} -gt 0 ] || { log "no stacks/Pulumi.*.yaml"; exit 1; }
if [ -z "${COTVR_RENDER_DIR:-}" ]; then
    [ -d "$ROOT/node_modules" ] || (cd "$ROOT" && npm ci --no-audit --no-fund >&2)
    for stack in "${STACKS[@]}"; do
        (cd "$ROOT" && npm run --silent render -- --stack "$stack" --out "$RENDER/$stack" >&2)
    done
fi
# checkov scans one folder: the stacks and the self-test fixture side by side.
SCAN="$WORK/scan"
mkdir -p "$SCAN/_selftest"
for stack in "${STACKS[@]}"; do
    [ -d "$RENDER/$stack" ] || { log "no rendered stack $RENDER/$stack"; exit 1; }
    cp -r "$RENDER/$stack" "$SCAN/$stack"
done
cp "$HERE/fixtures/new-finding.yaml" "$SCAN/_selftest/"
t_render=$((SECONDS - t0 - t_install))
t_checks=$SECONDS

kubeconform() {
    "$KUBECONFORM" -strict -summary -kubernetes-version "$KUBE_VERSION" \
        -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
}
fail() { log "FAILED: $*"; exit 1; }

# Self-tests: each gate must fail on what it exists to catch.
if out=$(kubeconform "$HERE/fixtures/schema-violation.yaml" 2>&1); then
    fail "kubeconform accepted fixtures/schema-violation.yaml: $out"
fi
for want in "'securityContexts' not allowed" "'nodeSelecter' not allowed"; do
    grep -qF "$want" <<<"$out" || fail "kubeconform did not report $want: $out"
done

kubeconform "$HERE/fixtures/new-finding.yaml" >/dev/null || fail "fixtures/new-finding.yaml must be a valid Job (only checkov may object to it)"

log "kubeconform $KUBECONFORM_VERSION -strict, Kubernetes $KUBE_VERSION schemas: ${STACKS[*]}"
kubeconform "${STACKS[@]/#/$SCAN/}" || fail "kubeconform (see above)"

log "checkov $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))'): ${STACKS[*]}"
# --skip-download: no Prisma Cloud calls (guidelines, severities); JSON on stdout, exit status ours.
(cd "$SCAN" && "$VENV/bin/checkov" -d . --framework kubernetes --skip-download --soft-fail -o json >"$WORK/checkov.json")
judge() { "$VENV/bin/python" "$HERE/findings.py" "$WORK/checkov.json" "$SCAN" --skip "$HERE/skip-list.txt" "$@"; }
if out=$(judge --stacks _selftest 2>&1); then
    fail "findings.py passed fixtures/new-finding.yaml: $out"
fi
for want in "NEW finding: CKV_K8S_16 on _selftest/Job/train/selftest-train" "NEW finding: CKV_K8S_19 on _selftest/Job/train/selftest-train"; do
    grep -qF "$want" <<<"$out" || fail "findings.py did not report '$want' (does a list line excuse it?): $(grep -v '^STALE' <<<"$out")"
done
if grep -q "NEW finding: CKV_K8S_43 " <<<"$out"; then fail "the skip list did not apply to the fixture: $(grep -v '^STALE' <<<"$out")"; fi
judge --stacks "$(IFS=,; echo "${STACKS[*]}")" $LIST || fail "checkov findings (see above): fix them, or add them to skip-list.txt with the reason"
log "passed in $((SECONDS - t0))s (install ${t_install}s, render ${t_render}s, checks $((SECONDS - t_checks))s)"
