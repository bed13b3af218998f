#!/usr/bin/env bash
# Figures (not a test): wall time of `pulumi preview` and `pulumi up` of the blog stack on the e2e
# cluster (Jobs complete at once, COT_E2E_JOB_MS=0), side by side with, measured in the same run:
#   - `kubectl apply --dry-run=server` of the same objects as `npm run render` writes them;
#   - the engine's floor: an empty program with this project's runtime options (Pulumi.yaml);
#   - a minimal Kubernetes program (provider, Namespace, ConfigMap): what any program pays for
#     importing @pulumi/pulumi and @pulumi/kubernetes and starting the provider;
#   - the blog program under the runtimes it had before: ts-node transpile-only (a noCheck tsconfig)
#     and ts-node type-checking (the SDK's default), each with an empty ts-node cache.
# Previews are the median of BENCH_REPEAT (3) runs of a first preview: no state, namespace absent.
# Last, one more first preview each of the Kubernetes program and the stack, split into phases from
# the engine's log (preview-phases.mjs): engine start, the program, the resource graph, exit.
# sucrase (this project's runtime) keeps no cache, so every run is cold.
#
#   bash test/e2e/bench.sh [stack]     (default: blog)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STACK="${1:-blog}"

eval "$(bash "$ROOT/sim/toolchain.sh" --env)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cot-vr-bench.XXXXXX")"
trap 'bash "$ROOT/sim/cluster.sh" stop "$WORK/cluster" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
COT_E2E_JOB_MS=0 COT_E2E_GPU_NODES="${COT_E2E_GPU_NODES:-4}" bash "$ROOT/sim/cluster.sh" start "$WORK/cluster"
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
  case "$(basename "$e")" in node_modules|render|out|images|test|sim) ;; *) cp -r "$e" "$P/" ;; esac
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
# The engine's floor: an empty program, same runtime options, same backend.
E="$WORK/empty"
mkdir -p "$E"
sed 's/^name: .*/name: empty/; /^stackConfigDir:/d' "$P/Pulumi.yaml" >"$E/Pulumi.yaml"
printf 'export {};\n' >"$E/index.ts"
printf '{"name":"empty","main":"index.ts"}\n' >"$E/package.json"
ln -s "$ROOT/node_modules" "$E/node_modules"
(cd "$E" && pulumi stack init floor --non-interactive >/dev/null)
# A minimal Kubernetes program: the SDK imports, the provider, one Namespace and one ConfigMap in it.
K="$WORK/k8s"
mkdir -p "$K"
sed 's/^name: empty/name: k8s-floor/' "$E/Pulumi.yaml" >"$K/Pulumi.yaml"
cat >"$K/index.ts" <<'TS'
import * as k8s from "@pulumi/kubernetes";
const provider = new k8s.Provider("k8s", { context: "e2e", enableServerSideApply: true });
const ns = new k8s.core.v1.Namespace("ns", { metadata: { name: "bench-k8s-floor" } }, { provider });
export const configMap = new k8s.core.v1.ConfigMap("cm", { metadata: { namespace: ns.metadata.name }, data: { a: "b" } }, { provider }).metadata.name;
TS
printf '{"name":"k8s-floor","main":"index.ts"}\n' >"$K/package.json"
ln -s "$ROOT/node_modules" "$K/node_modules"
(cd "$K" && pulumi stack init floor --non-interactive >/dev/null)

# The runtimes the blog program had before: ts-node, transpile-only or type-checking.
cp "$P/Pulumi.yaml" "$WORK/Pulumi.sucrase.yaml"
awk '/^  options:/ {print; print "    typescript: true"; print "    tsconfig: tsconfig.tsnode.json"; skip=1; next}
     skip && /^    / {next} {skip=0; print}' "$P/Pulumi.yaml" >"$WORK/Pulumi.tsnode.yaml"
cat >"$P/tsconfig.tsnode.json" <<'JSON'
{"compilerOptions": {"noCheck": true, "target": "es2022", "module": "commonjs", "moduleResolution": "node",
 "esModuleInterop": true, "skipLibCheck": true, "types": ["node"]}, "files": ["index.ts"]}
JSON

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
previews() { # label dir stack [VAR=value...] -> median seconds in LAST; an empty ts-node cache each run
  local label="$1" dir="$2" stack="$3" i times=(); shift 3
  for ((i = 0; i < REPEAT; i++)); do
    cd "$dir"
    timeit "$label" env TS_NODE_CACHE_DIRECTORY="$(mktemp -d "$WORK/tsnode.XXXXXX")" "$@" pulumi preview --stack "$stack" --non-interactive
    cd - >/dev/null
    times+=("$LAST")
  done
  LAST=$(printf '%s\n' "${times[@]}" | median)
}

previews floor "$E" floor; t_floor=$LAST
previews k8s "$K" floor; t_k8s=$LAST
previews preview "$P" "$STACK"; t_preview=$LAST
cp "$WORK/Pulumi.tsnode.yaml" "$P/Pulumi.yaml"
previews tsnode "$P" "$STACK" PULUMI_NODEJS_TRANSPILE_ONLY=true; t_tsnode=$LAST
previews typecheck "$P" "$STACK" PULUMI_NODEJS_TRANSPILE_ONLY=false; t_typecheck=$LAST
cp "$WORK/Pulumi.sucrase.yaml" "$P/Pulumi.yaml"
# Where a first preview's time goes, from the engine's log (one more run each, not in the medians).
phases() { # dir stack -> text in LAST
  local t0 t1
  cd "$1"
  t0=$(now)
  pulumi preview --stack "$2" --non-interactive --logtostderr -v=5 >/dev/null 2>"$WORK/phases.log" || { tail -n 30 "$WORK/phases.log" >&2; exit 1; }
  t1=$(now)
  cd - >/dev/null
  LAST=$(node "$HERE/preview-phases.mjs" "$t0" "$t1" <"$WORK/phases.log")
}
phases "$K" floor; p_k8s=$LAST
phases "$P" "$STACK"; p_preview=$LAST
timeit up pulumi up --stack "$STACK" --non-interactive --yes --skip-preview
t_up=$LAST
timeit preview2 pulumi preview --stack "$STACK" --non-interactive
t_preview2=$LAST

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", a / b}'; }
cat <<EOF

stack $STACK: $objects rendered objects; $(kubectl get nodes --no-headers | wc -l) simulated nodes; Jobs complete at once; previews: median of $REPEAT first previews
                                                     seconds   vs floor   vs dry-run
  kubectl apply --dry-run=server                     ${t_dry}s     $(ratio "$t_dry" "$t_floor")x       1.0x
  pulumi preview, empty program (floor)              ${t_floor}s     1.0x       $(ratio "$t_floor" "$t_dry")x
  pulumi preview, minimal Kubernetes program         ${t_k8s}s     $(ratio "$t_k8s" "$t_floor")x       $(ratio "$t_k8s" "$t_dry")x
  pulumi preview $STACK (sucrase, as shipped)         ${t_preview}s     $(ratio "$t_preview" "$t_floor")x       $(ratio "$t_preview" "$t_dry")x   (goal: <= 1.5x the floor; $(ratio "$t_preview" "$t_k8s")x the Kubernetes program)
  pulumi preview $STACK, ts-node transpile-only       ${t_tsnode}s     $(ratio "$t_tsnode" "$t_floor")x       $(ratio "$t_tsnode" "$t_dry")x   (the runtime before sucrase)
  pulumi preview $STACK, ts-node type-checking        ${t_typecheck}s     $(ratio "$t_typecheck" "$t_floor")x       $(ratio "$t_typecheck" "$t_dry")x   (the SDK's default)
  pulumi up (create, await Jobs)                     ${t_up}s     $(ratio "$t_up" "$t_floor")x       $(ratio "$t_up" "$t_dry")x
  pulumi preview (no changes, namespace exists)      ${t_preview2}s     $(ratio "$t_preview2" "$t_floor")x       $(ratio "$t_preview2" "$t_dry")x
  npm run render                                     ${t_render}s
where a first preview's time goes (one run each, engine log):
  minimal Kubernetes program: $p_k8s
  $STACK:                       $p_preview
machine: $(nproc) cores; pulumi $(pulumi version); kubectl $(kubectl version --client -o json | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0)).clientVersion.gitVersion)')
EOF
