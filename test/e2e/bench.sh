#!/usr/bin/env bash
# Figures (not a test): wall time of `pulumi preview` and `pulumi up` of the blog stack on the e2e
# cluster (Jobs complete at once, COT_E2E_JOB_MS=0) against `kubectl apply --dry-run=server` of the
# same objects as `npm run render` writes them, measured in the same run, as ratios.
#
#   bash test/e2e/bench.sh [stack]     (default: blog)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STACK="${1:-blog}"

eval "$(bash "$HERE/toolchain.sh" --env)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cot-vr-bench.XXXXXX")"
trap 'bash "$HERE/cluster.sh" stop "$WORK/cluster" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
COT_E2E_JOB_MS=0 COT_E2E_GPU_NODES="${COT_E2E_GPU_NODES:-4}" bash "$HERE/cluster.sh" start "$WORK/cluster"
export KUBECONFIG="$WORK/cluster/kubeconfig"
export PULUMI_BACKEND_URL="file://$WORK/state" PULUMI_CONFIG_PASSPHRASE=bench PULUMI_SKIP_UPDATE_CHECK=true \
  PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true PULUMI_HOME="$WORK/pulumi-home" NO_COLOR=1
mkdir -p "$WORK/state" "$WORK/pulumi-home"

# A copy of the project, so that the shipped stack file is never changed.
P="$WORK/project"
mkdir -p "$P"
for e in "$ROOT"/*; do
  case "$(basename "$e")" in node_modules|render|out|images|test) ;; *) cp -r "$e" "$P/" ;; esac
done
ln -s "$ROOT/node_modules" "$P/node_modules"
cd "$P"
pulumi stack init "$STACK" --non-interactive >/dev/null
cfg() { pulumi config set --stack "$STACK" --non-interactive "$@" >/dev/null; }
cfg --path cot-vr:cluster.kubeconfig "$KUBECONFIG"
cfg --path cot-vr:cluster.context e2e
cfg --secret cot-vr:hfToken hf_bench_placeholder

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b - a}'; }
timeit() { # label cmd... -> seconds in LAST
  local label="$1" t0 t1; shift
  t0=$(now)
  "$@" >"$WORK/$label.log" 2>&1 || { echo "[bench] $label failed:" >&2; tail -n 30 "$WORK/$label.log" >&2; exit 1; }
  t1=$(now); LAST=$(secs "$t0" "$t1")
}

timeit render npm --prefix "$ROOT" run --silent render -- --stack "$STACK" --out "$WORK/render"
t_render=$LAST
objects=$(grep -h '^kind:' "$WORK"/render/*.yaml | wc -l)
# Server dry-run of every rendered object as a create, like the update's: the namespaces must exist
# (a dry-run creates nothing), so make them, measure, and remove them again before the update.
namespaces=$(sed -n 's/^  namespace: //p' "$WORK"/render/*.yaml | sort -u)
for ns in $namespaces; do kubectl create namespace "$ns" >/dev/null; done
timeit dryrun kubectl apply --dry-run=server -f "$WORK/render"
t_dry=$LAST
for ns in $namespaces; do kubectl delete namespace "$ns" --wait=true >/dev/null; done
timeit preview pulumi preview --stack "$STACK" --non-interactive
t_preview=$LAST
timeit up pulumi up --stack "$STACK" --non-interactive --yes --skip-preview
t_up=$LAST
timeit preview2 pulumi preview --stack "$STACK" --non-interactive
t_preview2=$LAST

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", a / b}'; }
cat <<EOF

stack $STACK: $objects rendered objects; $(kubectl get nodes --no-headers | wc -l) simulated nodes; Jobs complete at once
  npm run render                        ${t_render}s
  kubectl apply --dry-run=server        ${t_dry}s   (1.0x)
  pulumi preview (empty stack)          ${t_preview}s   ($(ratio "$t_preview" "$t_dry")x)
  pulumi up (create, await Jobs)        ${t_up}s   ($(ratio "$t_up" "$t_dry")x)
  pulumi preview (no changes)           ${t_preview2}s   ($(ratio "$t_preview2" "$t_dry")x)
machine: $(nproc) cores; pulumi $(pulumi version); kubectl $(kubectl version --client -o json | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0)).clientVersion.gitVersion)')
EOF
