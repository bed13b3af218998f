#!/usr/bin/env bash
# The e2e tier: the real Pulumi engine and Kubernetes provider against a real kube-apiserver with
# simulated MI300X nodes. `npm run test:e2e` (and `npm test` through test/all.sh).
#
#   toolchain (build once, cached) -> cluster up -> vitest e2e suite -> cluster down
#
# Arguments go to vitest: file filters, e.g. `bash test/e2e/run.sh pipeline` runs pipeline.e2e.ts only.
#
# Environment:
#   COT_E2E_KEEP=1       leave the cluster and work dirs in place after the run (prints where)
#   COT_E2E_FILTER=re    only tests whose name matches (vitest -t)
#   COT_E2E_CACHE        where built binaries are cached (default ${XDG_CACHE_HOME:-~/.cache}/cot-vr-e2e)
#   COT_SIM_DOWNLOAD     0 (default here): build the toolchain from the Go module proxy; auto/1 download
#                        official releases (sim/toolchain.sh)
# The toolchain must build; a missing tool fails this script, it never skips silently.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
t0=$SECONDS
# CI machines must not contact outside hosts: no downloads of release binaries unless asked for.
export COT_SIM_DOWNLOAD="${COT_SIM_DOWNLOAD:-0}"

echo "[e2e] toolchain"
env_lines="$(bash "$ROOT/sim/toolchain.sh" --env)" || { echo "[e2e] FAILED: the e2e toolchain could not be built (see above)" >&2; exit 1; }
eval "$env_lines"
t_tool=$((SECONDS - t0))

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cot-vr-e2e.XXXXXX")"
export COT_E2E_WORK="$WORK" COT_E2E_CLUSTER="$WORK/cluster"
cleanup() {
  local rc=$?
  if [[ "${COT_E2E_KEEP:-}" == 1 ]]; then
    echo "[e2e] kept: cluster $COT_E2E_CLUSTER (stop: bash sim/cluster.sh stop $COT_E2E_CLUSTER), work $WORK" >&2
  else
    bash "$ROOT/sim/cluster.sh" stop "$COT_E2E_CLUSTER" || true
    if [[ $rc == 0 ]]; then rm -rf "$WORK"; else echo "[e2e] logs kept in $WORK" >&2; fi
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "[e2e] cluster"
bash "$ROOT/sim/cluster.sh" start "$COT_E2E_CLUSTER"
t_cluster=$((SECONDS - t0 - t_tool))

echo "[e2e] tests"
cd "$ROOT"
args=(run --config test/e2e/vitest.config.mts)
[[ -n "${COT_E2E_FILTER:-}" ]] && args+=(-t "$COT_E2E_FILTER")
set +e
npx vitest "${args[@]}" "$@"
rc=$?
set -e
echo "[e2e] toolchain ${t_tool}s, cluster ${t_cluster}s, tests $((SECONDS - t0 - t_tool - t_cluster))s, total $((SECONDS - t0))s"
exit $rc
