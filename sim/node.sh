#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine: the control plane of cluster.sh plus a real
# node (containerd, runc, the CNI bridge, kubelet, kube-proxy in iptables mode, CoreDNS) that carries
# the MI300X labels and taint and advertises 8 amd.com/gpu. Containers really run; there is no GPU.
#
#   bash sim/node.sh start DIR    everything up; DIR/kubeconfig, DIR/env (CONTAINERD_ADDRESS, ...)
#   bash sim/node.sh stop DIR     everything down, and the machine as it was found (see `teardown`)
#
# Needs root and, from Debian's packages: containerd, runc, containernetworking-plugins, iptables,
# conntrack (test/pods/run.sh installs them). kubelet, kube-proxy, crictl, CoreDNS and pause come
# from `sim/toolchain.sh --only node` (built, cached). The node is reached on its own interface
# ($IFACE, $NODE_IP); pods get 10.244.0.0/24 on the bridge $BRIDGE; Services 10.96.0.0/16.
# Pulled images stay in containerd's store under the cache (COT_PODS_CACHE), so a second run pulls
# only what changed.
#
# Environment: COT_PODS_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/cot-vr-pods),
#   COT_PODS_REGISTRY host:port of a plain-HTTP registry containerd may pull from (optional).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-}"; DIR="${2:-}"
[[ -n "$cmd" && -n "$DIR" ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
mkdir -p "$DIR"; DIR="$(cd "$DIR" && pwd)"
CACHE="${COT_PODS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cot-vr-pods}"
NODE_NAME=mi300x-0
NODE_IP=10.250.0.1
IFACE=cotvr0
BRIDGE=cotvr-cni0
POD_CIDR=10.244.0.0/24
SVC_CIDR=10.96.0.0/16
PAUSE_IMAGE=registry.k8s.io/pause:3.10
CNI_BIN=/usr/lib/cni
SOCK="$DIR/containerd/containerd.sock"
# The kernel settings the kubelet insists on (protectKernelDefaults) and the ones pod networking
# needs; each is saved before and restored by `stop`.
SYSCTLS=(vm.overcommit_memory=1 vm.panic_on_oom=0 kernel.panic=10 kernel.panic_on_oops=1
  kernel.keys.root_maxkeys=1000000 kernel.keys.root_maxbytes=25000000
  net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1)

log() { printf '[node] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
PIDS="$DIR/node-pids"
# shellcheck source=sim/lib.sh
source "$HERE/lib.sh"   # free_port, start_bg, wait_for

# ---- start ----------------------------------------------------------------------------------------
preflight() {
  [[ $EUID == 0 ]] || die "a real node needs root (containers, mounts, iptables)"
  local b
  for b in containerd runc iptables conntrack ip kubelet kube-proxy crictl coredns pause kubectl; do
    command -v "$b" >/dev/null || die "$b is not on PATH"
  done
  [[ -x "$CNI_BIN/bridge" ]] || die "no CNI plugins in $CNI_BIN (Debian: containernetworking-plugins)"
  [[ -f "$DIR/node-pids" ]] && die "a node is already recorded in $DIR/node-pids; stop it first"
  ip link show "$IFACE" >/dev/null 2>&1 && die "interface $IFACE exists: another node is running (or a stop was missed: bash $0 stop <its dir>)"
  return 0
}

save_machine_state() {
  local kv k
  : >"$DIR/sysctl.saved"
  for kv in "${SYSCTLS[@]}"; do
    k="${kv%%=*}"
    echo "$k=$(sysctl -n "$k")" >>"$DIR/sysctl.saved"
  done
  for k in /var/lib/kubelet /var/log/pods /var/log/containers /etc/cni /opt/cni /run/containerd; do
    [[ -e "$k" ]] && echo "$k" >>"$DIR/paths.existed"
  done
  ip netns list 2>/dev/null | awk '{print $1}' >"$DIR/netns.before"
  touch "$DIR/paths.existed"
}

network() {
  # (no dummy interfaces in this kernel: a veth pair whose other end is unused does the same)
  ip link add "$IFACE" type veth peer name "$IFACE-peer"
  ip addr add "$NODE_IP/32" dev "$IFACE"
  ip link set "$IFACE-peer" up
  ip link set "$IFACE" up
  mkdir -p "$DIR/cni/net.d" "$DIR/cni/ipam"
  cat >"$DIR/cni/net.d/10-cotvr.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "cotvr",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$DIR/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

containerd_up() {
  local root="$CACHE/containerd"  # the image store outlives the node (pulled layers are reused)
  mkdir -p "$DIR/containerd" "$root" "$DIR/logs"
  local mirror=""
  if [[ -n "${COT_PODS_REGISTRY:-}" ]]; then
    mirror="[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"$COT_PODS_REGISTRY\"]
  endpoint = [\"http://$COT_PODS_REGISTRY\"]"
  fi
  cat >"$DIR/containerd/config.toml" <<EOF
version = 2
root = "$root"
state = "$DIR/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails ("can't get final child's PID").
  restrict_oom_score_adj = true
  enable_cdi = false
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$CNI_BIN"
  conf_dir = "$DIR/cni/net.d"
$mirror
EOF
  start_bg containerd containerd --config "$DIR/containerd/config.toml"
  wait_for containerd 30 crictl --runtime-endpoint "unix://$SOCK" version
  # pause has no registry to come from: built by the toolchain, imported once.
  if ! ctr -a "$SOCK" -n k8s.io images check "name==$PAUSE_IMAGE" 2>/dev/null | grep -q "$PAUSE_IMAGE"; then
    bash "$HERE/node/image-from-binary.sh" "$(command -v pause)" /pause "$PAUSE_IMAGE" "$DIR/pause.tar"
    ctr -a "$SOCK" -n k8s.io images import --no-unpack=false "$DIR/pause.tar" >/dev/null
    log "imported $PAUSE_IMAGE"
  fi
}

kubelet_up() {
  local port hport labels
  port=$(free_port); hport=$(free_port)
  # The labels the AMD GPU operator's node labeller sets on a TensorWave MI300X node (sim/kwok/nodes.yaml).
  labels=$(awk '/^  name: mi300x-0$/ {on=1} on && /^  labels:/ {l=1; next} l && /^    [a-z]/ {sub(/^ +/, ""); sub(/: /, "="); gsub(/"/, ""); print; next} l && !/^    / {exit}' "$HERE/kwok/nodes.yaml" \
    | grep -v -E '^(kubernetes\.io/|type=)' | paste -sd, -)
  mkdir -p "$DIR/kubelet" "$DIR/pod-logs"
  cat >"$DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $hport
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failSwapOn: false
protectKernelDefaults: true
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
containerRuntimeEndpoint: unix://$SOCK
podLogsDir: $DIR/pod-logs
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%}
registerWithTaints:
- {key: amd.com/gpu, value: present, effect: NoSchedule}
EOF
  start_bg kubelet kubelet --config "$DIR/kubelet.yaml" --kubeconfig "$DIR/kubeconfig" \
    --root-dir "$DIR/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --node-labels "$labels" --v 1
  wait_for "node $NODE_NAME registered" 90 kubectl get node "$NODE_NAME"
  # Extended resources without a device plugin: the node's status capacity, the documented way.
  kubectl patch node "$NODE_NAME" --subresource status --type json \
    -p '[{"op":"add","path":"/status/capacity/amd.com~1gpu","value":"8"}]' >/dev/null
  wait_for "node Ready" 120 kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
  wait_for "8 amd.com/gpu allocatable" 60 bash -c "kubectl get node $NODE_NAME -o jsonpath='{.status.allocatable.amd\\.com/gpu}' | grep -qx 8"
}

proxy_dns_up() {
  start_bg kube-proxy kube-proxy --kubeconfig "$DIR/kubeconfig" --hostname-override "$NODE_NAME" \
    --proxy-mode iptables --cluster-cidr "$POD_CIDR" --iptables-localhost-nodeports=false \
    --healthz-bind-address "127.0.0.1:$(free_port)" --metrics-bind-address "127.0.0.1:$(free_port)" \
    --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0
  local hp rp; hp=$(free_port); rp=$(free_port)
  # CoreDNS as a process of the node (not a pod): the pods' nameserver is the node's address.
  cat >"$DIR/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:$hp
    ready 127.0.0.1:$rp
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $DIR/kubeconfig e2e
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loadbalance
}
EOF
  start_bg coredns coredns -conf "$DIR/Corefile"
  wait_for CoreDNS 60 curl -fsS "http://127.0.0.1:$rp/ready"
  wait_for "kube-proxy rules" 60 bash -c "iptables -t nat -S KUBE-SERVICES | grep -q default/kubernetes"
}

start() {
  local t0=$SECONDS
  preflight
  save_machine_state
  echo started >"$DIR/node-state"
  echo "$PATH" >"$DIR/path"
  local kv; for kv in "${SYSCTLS[@]}"; do sysctl -qw "$kv"; done
  network
  log "control plane"
  COT_SIM_NODES=none COT_SIM_API_ADDRESS="$NODE_IP" COT_SIM_VOLUME_ROOT="$DIR/volumes" \
    bash "$HERE/cluster.sh" start "$DIR"
  export KUBECONFIG="$DIR/kubeconfig"
  log "containerd"; containerd_up
  log "kubelet"; kubelet_up
  log "kube-proxy, CoreDNS"; proxy_dns_up
  cat >"$DIR/env" <<EOF
export KUBECONFIG=$DIR/kubeconfig
export CONTAINER_RUNTIME_ENDPOINT=unix://$SOCK
export CONTAINERD_ADDRESS=$SOCK
export COT_PODS_NODE=$NODE_NAME
export COT_PODS_VOLUMES=$DIR/volumes
EOF
  log "up in $((SECONDS - t0))s: source $DIR/env"
}

# ---- stop: leave the machine as it was found -----------------------------------------------------
kill_recorded() {
  [[ -f "$DIR/node-pids" ]] || return 0
  local p name
  while read -r p name; do
    if [[ "$name" == "$1" ]]; then
      kill "$p" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$p" 2>/dev/null || true
    fi
  done <"$DIR/node-pids"
}

iptables_clean() { # remove every chain the kubelet, kube-proxy and the CNI plugins made, and the jumps to them
  local ipt t chains c
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for t in filter nat mangle; do
      chains=$("$ipt" -t "$t" -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^(KUBE-|CNI-)/ {print $2}')
      [[ -n "$chains" ]] || continue
      # jumps from the built-in chains (and any other) first
      "$ipt" -t "$t" -S | awk '$1=="-A" && /-j (KUBE-|CNI-)/' | while read -r line; do
        # shellcheck disable=SC2086
        eval "$ipt -t $t -D ${line#-A }" 2>/dev/null || true
      done
      for c in $chains; do "$ipt" -t "$t" -F "$c" 2>/dev/null || true; done
      for c in $chains; do "$ipt" -t "$t" -X "$c" 2>/dev/null || true; done
    done
  done
}

pods_kill() { # what is left in the kubelet's pod cgroups (a pod the runtime did not stop) is this node's: SIGKILL
  local f p n=0
  for f in $(find /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/kubepods -name cgroup.procs 2>/dev/null); do
    for p in $(cat "$f" 2>/dev/null); do kill -9 "$p" 2>/dev/null && n=$((n + 1)); done
  done
  (( n == 0 )) || { log "killed $n leftover pod processes"; sleep 0.5; }
}

cgroups_clean() { # the kubelet's kubepods tree in every hierarchy, deepest first
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods.slice; do
    [[ -d "$d" ]] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

stop() {
  [[ -f "$DIR/node-state" ]] || { log "nothing recorded in $DIR"; bash "$HERE/cluster.sh" stop "$DIR"; return 0; }
  # The kubelet first, so nothing is restarted; then every pod through the runtime (CNI DEL frees
  # the addresses and removes the network namespaces), then containerd.
  kill_recorded kubelet
  # Stop may run from a shell without the toolchain on PATH: use the PATH that start had.
  [[ -f "$DIR/path" ]] && PATH="$(cat "$DIR/path"):$PATH"
  if [[ -S "$SOCK" ]]; then
    if command -v crictl >/dev/null; then
      crictl --runtime-endpoint "unix://$SOCK" --timeout 20s rmp -fa >/dev/null 2>&1 || log "crictl rmp -fa failed: ending the pods' processes instead"
    else
      log "crictl is not on PATH: ending the pods' processes instead"
    fi
  fi
  kill_recorded kube-proxy
  kill_recorded coredns
  kill_recorded containerd
  # containerd-shim processes of this node outlive containerd by design: end them.
  pkill -f "containerd-shim-runc-v2 .*-address $SOCK" 2>/dev/null || true
  pods_kill
  sleep 0.5
  rm -f "$DIR/node-pids"
  bash "$HERE/cluster.sh" stop "$DIR"
  # mounts under the node's folders and the image store (pod volumes, sandbox /dev/shm, rootfs)
  findmnt -rn -o TARGET | awk -v a="$DIR/" -v b="$CACHE/" 'index($0, a) == 1 || index($0, b) == 1' | sort -r \
    | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # network namespaces made since start, the bridge, the node's address
  comm -13 <(sort "$DIR/netns.before" 2>/dev/null) <(ip netns list 2>/dev/null | awk '{print $1}' | sort) \
    | while read -r n; do ip netns delete "$n" 2>/dev/null || true; done
  ip link delete "$BRIDGE" 2>/dev/null || true
  ip link delete "$IFACE" 2>/dev/null || true
  iptables_clean
  command -v conntrack >/dev/null && conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
  cgroups_clean
  local kv; while IFS= read -r kv; do sysctl -qw "$kv" || true; done <"$DIR/sysctl.saved"
  local p
  for p in /var/lib/kubelet /var/log/pods /var/log/containers /etc/cni /opt/cni /run/containerd; do
    grep -qx "$p" "$DIR/paths.existed" 2>/dev/null || rm -rf "$p"
  done
  rm -f "$DIR/node-state"
  log "stopped; the machine is as it was (logs in $DIR/logs)"
}

case "$cmd" in
  start)
    trap 'rc=$?; if [[ $rc != 0 ]]; then log "start failed; logs:"; tail -n 15 "$DIR"/logs/*.log >&2 || true; stop; fi' EXIT
    start
    trap - EXIT
    ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
