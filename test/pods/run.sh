#!/usr/bin/env bash
# The pods tier: the pipeline's real programs in real containers on a real kubelet (sim/node.sh),
# from the project's own Dockerfiles (CPU twins, test/pods/images.sh), pulled from a local registry.
# `npm run test:pods`, and `npm test` through test/all.sh.
#
#   packages (Debian) -> toolchain (built once, cached) -> images (cached by content) -> registry
#   -> node (control plane + containerd + kubelet + kube-proxy + CoreDNS) -> vitest pods suite -> all down
#
# Arguments go to vitest (file filters). Needs root: containers, mounts, iptables.
# Environment:
#   COT_PODS_KEEP=1     leave the node, registry and work dir up after the run (prints how to stop them)
#   COT_PODS_CACHE      images, registry storage and containerd's store (default ~/.cache/cot-vr-pods)
#   COT_PODS_PIPELINE=0 skip the images and the pipeline suite (pipeline.pods.ts): the node suite only
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
t0=$SECONDS
export COT_SIM_DOWNLOAD="${COT_SIM_DOWNLOAD:-0}"
export COT_PODS_CACHE="${COT_PODS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cot-vr-pods}"
# Each phase prints its name and the seconds since the start; the last line sums them up.
phases=() last_name="" last_t=$SECONDS
phase() {
  [[ -n "$last_name" ]] && phases+=("$last_name $((SECONDS - last_t))s")
  last_name="$*" last_t=$SECONDS
  printf '[pods] %s (%ss)\n' "$*" "$((SECONDS - t0))" >&2
}

[[ $EUID == 0 ]] || { echo "[pods] FAILED: the pods tier runs containers and needs root" >&2; exit 1; }

phase "packages"
bash "$HERE/packages.sh"

phase "toolchain"
env_lines="$(bash "$ROOT/sim/toolchain.sh" --env)" || { echo "[pods] FAILED: the e2e toolchain could not be built" >&2; exit 1; }
eval "$env_lines"
node_lines="$(bash "$ROOT/sim/toolchain.sh" --env --only node)" || { echo "[pods] FAILED: the node's binaries could not be built" >&2; exit 1; }
eval "$node_lines"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cot-vr-pods.XXXXXX")"
export COT_E2E_WORK="$WORK" COT_E2E_CLUSTER="$WORK/cluster"
cleanup() {
  local rc=$?
  phase "tear-down"
  if [[ "${COT_PODS_KEEP:-}" == 1 ]]; then
    echo "[pods] kept: node $COT_E2E_CLUSTER (bash sim/node.sh stop $COT_E2E_CLUSTER), registry (bash test/pods/images.sh registry stop $WORK/registry), work $WORK" >&2
  else
    bash "$ROOT/sim/node.sh" stop "$COT_E2E_CLUSTER" || true
    if [[ -f "$WORK/machine.before" ]]; then
      bash "$ROOT/sim/node/machine-state.sh" >"$WORK/machine.after"
      if ! diff -u "$WORK/machine.before" "$WORK/machine.after" >"$WORK/machine.diff"; then
        echo "[pods] FAILED: the node's tear-down left the machine changed:" >&2; cat "$WORK/machine.diff" >&2
        rc=1
      else
        echo "[pods] tear-down: the machine is as it was (sysctls, links, netns, iptables, mounts, cgroups, paths, processes)" >&2
      fi
    fi
    [[ -f "$WORK/registry/pid" ]] && { bash "$HERE/images.sh" registry stop "$WORK/registry" || true; }
    if [[ $rc == 0 ]]; then rm -rf "$WORK"; else echo "[pods] logs kept in $WORK" >&2; fi
  fi
  phase "end"
  echo "[pods] phases: ${phases[*]}; total $((SECONDS - t0))s" >&2
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ "${COT_PODS_PIPELINE:-1}" != 0 ]]; then
  phase "images"
  bash "$HERE/images.sh" build
  phase "registry"
  # behind htpasswd auth, as a private registry is: every namespace's pods pull with a pull Secret
  eval "$(bash "$HERE/images.sh" registry start "$WORK/registry" --auth)"   # exports COT_PODS_REGISTRY(_USER, _PASSWORD)
  eval "$(bash "$HERE/images.sh" push)"                                   # exports COT_PODS_IMAGE_<NAME>
fi

phase "node"
bash "$ROOT/sim/node/machine-state.sh" >"$WORK/machine.before"
bash "$ROOT/sim/node.sh" start "$COT_E2E_CLUSTER"
source "$COT_E2E_CLUSTER/env"

phase "tests"
cd "$ROOT"
set +e
suites=("$@"); [[ ${#suites[@]} == 0 && "${COT_PODS_PIPELINE:-1}" == 0 ]] && suites=(node)
npx vitest run --config test/pods/vitest.config.mts "${suites[@]}"
rc=$?
set -e
echo "[pods] tests exit $rc" >&2
exit $rc
