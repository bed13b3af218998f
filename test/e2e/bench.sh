#!/usr/bin/env bash
# Figures (not a test): wall time of `pulumi preview` and `pulumi up` of the blog stack on the e2e
# cluster (Jobs complete at once, COT_E2E_JOB_MS=0) against `kubectl apply --dry-run=server` of the
# same objects as `npm run render` writes them, and against the engine's floor (an empty TypeScript
# program), measured in the same run, as ratios. Previews are the median of BENCH_REPEAT (3) runs with
# the ts-node cache state fixed: "cold" = an empty TS_NODE_CACHE_DIRECTORY before every run, "warm" =
# one filled by a previous run. "type-checked" turns ts-node's type checking back on
# (PULUMI_NODEJS_TRANSPILE_ONLY=false, what every pulumi command paid before tsconfig.pulumi.json).
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
# What the program is compiled with comes from Pulumi.yaml, not from the environment.
unset PULUMI_NODEJS_TRANSPILE_ONLY PULUMI_NODEJS_TSCONFIG_PATH TS_NODE_CACHE_DIRECTORY
REPEAT="${BENCH_REPEAT:-3}"
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
# The engine's floor: an empty TypeScript program of the same runtime, same backend.
E="$WORK/empty"
mkdir -p "$E"
printf 'name: empty\nruntime:\n  name: nodejs\n  options:\n    typescript: true\n    tsconfig: tsconfig.pulumi.json\n' >"$E/Pulumi.yaml"
cp "$ROOT/tsconfig.pulumi.json" "$E/"
printf 'export {};\n' >"$E/index.ts"
printf '{"name":"empty","main":"index.ts"}\n' >"$E/package.json"
ln -s "$ROOT/node_modules" "$E/node_modules"
(cd "$E" && pulumi stack init floor --non-interactive >/dev/null)

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
previews() { # label dir stack cache(cold|warm) [check] -> median seconds in LAST
  local label="$1" dir="$2" stack="$3" cache="$4" check="${5:-}" i times=()
  local warmdir="$WORK/tsnode-warm-$label"
  if [[ "$cache" == warm ]]; then mkdir -p "$warmdir"; (cd "$dir" && env TS_NODE_CACHE_DIRECTORY="$warmdir" ${check:+PULUMI_NODEJS_TRANSPILE_ONLY=false} pulumi preview --stack "$stack" --non-interactive >/dev/null 2>&1) || true; fi
  for ((i = 0; i < REPEAT; i++)); do
    local cdir="$warmdir"
    [[ "$cache" == cold ]] && cdir="$(mktemp -d "$WORK/tsnode-cold.XXXXXX")"
    cd "$dir"
    timeit "$label" env TS_NODE_CACHE_DIRECTORY="$cdir" ${check:+PULUMI_NODEJS_TRANSPILE_ONLY=false} pulumi preview --stack "$stack" --non-interactive
    cd - >/dev/null
    times+=("$LAST")
  done
  LAST=$(printf '%s\n' "${times[@]}" | median)
}

previews floor "$E" floor cold; t_floor=$LAST
previews floor-warm "$E" floor warm; t_floor_warm=$LAST
previews cold "$P" "$STACK" cold; t_preview=$LAST
previews warm "$P" "$STACK" warm; t_preview_warm=$LAST
previews typecheck "$P" "$STACK" cold check; t_typecheck=$LAST
timeit up pulumi up --stack "$STACK" --non-interactive --yes --skip-preview
t_up=$LAST
timeit preview2 pulumi preview --stack "$STACK" --non-interactive
t_preview2=$LAST

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", a / b}'; }
cat <<EOF

stack $STACK: $objects rendered objects; $(kubectl get nodes --no-headers | wc -l) simulated nodes; Jobs complete at once; previews: median of $REPEAT
                                                 seconds   vs floor   vs dry-run
  kubectl apply --dry-run=server                 ${t_dry}s     $(ratio "$t_dry" "$t_floor")x       1.0x
  pulumi preview, empty program (floor), cold    ${t_floor}s     1.0x       $(ratio "$t_floor" "$t_dry")x
  pulumi preview, empty program, warm            ${t_floor_warm}s     $(ratio "$t_floor_warm" "$t_floor")x       $(ratio "$t_floor_warm" "$t_dry")x
  pulumi preview $STACK, cold ts-node cache       ${t_preview}s     $(ratio "$t_preview" "$t_floor")x       $(ratio "$t_preview" "$t_dry")x   (goal: <= 1.5x the floor)
  pulumi preview $STACK, warm ts-node cache       ${t_preview_warm}s     $(ratio "$t_preview_warm" "$t_floor")x       $(ratio "$t_preview_warm" "$t_dry")x
  pulumi preview $STACK, cold, type-checked       ${t_typecheck}s     $(ratio "$t_typecheck" "$t_floor")x       $(ratio "$t_typecheck" "$t_dry")x   (PULUMI_NODEJS_TRANSPILE_ONLY=false: as before tsconfig.pulumi.json)
  pulumi up (create, await Jobs)                 ${t_up}s     $(ratio "$t_up" "$t_floor")x       $(ratio "$t_up" "$t_dry")x
  pulumi preview (no changes)                    ${t_preview2}s     $(ratio "$t_preview2" "$t_floor")x       $(ratio "$t_preview2" "$t_dry")x
  npm run render                                 ${t_render}s
machine: $(nproc) cores; pulumi $(pulumi version); kubectl $(kubectl version --client -o json | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0)).clientVersion.gitVersion)')
EOF
