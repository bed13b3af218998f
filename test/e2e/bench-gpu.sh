#!/usr/bin/env bash
# Figures (not a test): GPU-hours held, GPU-hours of work, their ratio, makespan and the DAG's critical
# path of the blog stack in one `pulumi up` with the blog's stage times (1 simulated hour = 1 s), for
# this design (the generation scales the teacher, images/datagen/teacher_scale.py run against the API
# server through its Role) and for the old behaviour (`teacher.keep: true`), in the same run.
#
#   bash test/e2e/bench-gpu.sh      (COT_E2E_HOUR_SECONDS=s per simulated hour, COT_E2E_PARALLEL=n)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

eval "$(bash "$ROOT/sim/toolchain.sh" --env)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cot-vr-bench-gpu.XXXXXX")"
trap 'bash "$ROOT/sim/cluster.sh" stop "$WORK/cluster" >/dev/null 2>&1 || true; [[ "${COT_E2E_KEEP:-}" == 1 ]] || rm -rf "$WORK"' EXIT
bash "$ROOT/sim/cluster.sh" start "$WORK/cluster"
export COT_E2E_WORK="$WORK" COT_E2E_CLUSTER="$WORK/cluster"
cd "$ROOT"
npx tsx "$HERE/bench-gpu.ts"
echo "machine: $(nproc) cores; pulumi $(pulumi version)"
