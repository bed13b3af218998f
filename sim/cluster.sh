#!/usr/bin/env bash
# A local Kubernetes control plane with simulated TensorWave MI300X nodes, on loopback.
#
#   bash sim/cluster.sh start DIR   start etcd, kube-apiserver, kube-controller-manager,
#                                        kube-scheduler, kwok and a PV provisioner; write DIR/kubeconfig
#   bash sim/cluster.sh stop DIR    stop what `start` started (by the pids in DIR/pids)
#   bash sim/cluster.sh status DIR
#
# Binaries come from PATH (see toolchain.sh). Certificates, keys and the kubeconfig are made here,
# in DIR. kwok's Stages are API objects (kwok/stage-crd.yaml; the defaults of kwok/stages.yaml), which
# sim/stages.ts changes per run. Nodes: sim/kwok/nodes.yaml (2 x MI300X with 8 amd.com/gpu each, 1 CPU-only node).
# Volumes: a default StorageClass `standard` (and `local-path`, `nfs-rwx`) served by
# sim/provisioner.mjs, which makes a Retain PV for each pending claim of an existing class and
# hands a Released PV back to a new claim of the same namespace/name (data kept across `destroy`).
#
# For the pods tier's real node (sim/node.sh, which calls this):
#   COT_SIM_NODES=none          no kwok and no simulated nodes (a kubelet registers the node)
#   COT_SIM_API_ADDRESS=IP      serve the API on IP instead of 127.0.0.1 (pods must reach it), with the
#                               `kubernetes` Service's endpoints kept on it
#   COT_SIM_VOLUME_ROOT=DIR     PVs are folders under DIR, made 0777 like local-path-provisioner's
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-}"; DIR="${2:-}"
[[ -n "$cmd" && -n "$DIR" ]] || { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
log() { printf '[cluster] %s\n' "$*" >&2; }
NODES="${COT_SIM_NODES:-kwok}"
API_ADDR="${COT_SIM_API_ADDRESS:-127.0.0.1}"
case "$NODES" in kwok|none) ;; *) echo "COT_SIM_NODES=$NODES: use kwok or none" >&2; exit 2 ;; esac

PIDS="$DIR/pids"
# shellcheck source=sim/lib.sh
source "$HERE/lib.sh"   # free_port, start_bg, wait_for

stop_all() {
  [[ -f "$DIR/pids" ]] || return 0
  # Stop in reverse start order; each pid is one we started and recorded.
  local pids; pids=$(tac "$DIR/pids" | awk '{print $1}')
  local p
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.2
  done
  for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
  rm -f "$DIR/pids"
  log "stopped (logs in $DIR/logs)"
}

certs() {
  local c="$DIR/pki"; mkdir -p "$c"; cd "$c"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=cot-vr-e2e-ca" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' "$API_ADDR" >apiserver.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 2 -extfile apiserver.ext 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=e2e-admin" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 2 -extfile client.ext 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  cd - >/dev/null
}

kubeconfig() { # port
  cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://$API_ADDR:$1
    certificate-authority: $DIR/pki/ca.crt
users:
- name: e2e-admin
  user:
    client-certificate: $DIR/pki/admin.crt
    client-key: $DIR/pki/admin.key
contexts:
- name: e2e
  context: {cluster: e2e, user: e2e-admin}
current-context: e2e
EOF
}

start_all() {
  local b
  local need=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl node openssl)
  [[ "$NODES" == kwok ]] && need+=(kwok)
  for b in "${need[@]}"; do
    command -v "$b" >/dev/null || { log "$b is not on PATH (run: eval \"\$(bash sim/toolchain.sh --env)\")"; exit 1; }
  done
  [[ -f "$DIR/pids" ]] && { log "a cluster is already recorded in $DIR/pids; stop it first"; exit 1; }
  mkdir -p "$DIR/logs" "$DIR/etcd"
  local t0=$SECONDS
  certs
  local etcd_port etcd_peer api_port kcm_port sched_port kwok_port
  etcd_port=$(free_port "$API_ADDR"); etcd_peer=$(free_port "$API_ADDR"); api_port=$(free_port "$API_ADDR")
  kcm_port=$(free_port "$API_ADDR"); sched_port=$(free_port "$API_ADDR"); kwok_port=$(free_port "$API_ADDR")
  kubeconfig "$api_port"
  export KUBECONFIG="$DIR/kubeconfig"

  start_bg etcd etcd --name e2e --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "e2e=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync --log-level warn
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$etcd_port/health"

  local p="$DIR/pki" reconciler=none
  # A loopback address cannot be the `kubernetes` Service's endpoint; any other one is kept there.
  # A real node (not loopback) is reached by its InternalIP: its name resolves nowhere.
  local node_addr=()
  [[ "$API_ADDR" == 127.* ]] || { reconciler=lease; node_addr=(--kubelet-preferred-address-types InternalIP); }
  start_bg kube-apiserver kube-apiserver --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "$API_ADDR" --advertise-address "$API_ADDR" --secure-port "$api_port" \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" --client-ca-file "$p/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 --authorization-mode RBAC --allow-privileged=true \
    --endpoint-reconciler-type "$reconciler" --enable-priority-and-fairness=false --profiling=false "${node_addr[@]}"
  wait_for kube-apiserver 90 kubectl get --raw /readyz

  start_bg kube-controller-manager kube-controller-manager --kubeconfig "$KUBECONFIG" \
    --authentication-kubeconfig "$KUBECONFIG" --authorization-kubeconfig "$KUBECONFIG" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
    --controllers '*,-node-ipam-controller,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller' \
    --node-monitor-grace-period 300s \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --use-service-account-credentials=false --concurrent-job-syncs 10 --profiling=false
  start_bg kube-scheduler kube-scheduler --kubeconfig "$KUBECONFIG" \
    --authentication-kubeconfig "$KUBECONFIG" --authorization-kubeconfig "$KUBECONFIG" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false --profiling=false

  if [[ "$NODES" == kwok ]]; then
    # Job pods run for COT_E2E_JOB_MS before they succeed (0: at once), so that an update that did
    # not wait for a Job would be seen returning before the Job completed.
    local job_ms="${COT_E2E_JOB_MS:-1500}"
    awk -v ms="$job_ms" '{print} /^  name: pod-complete$/ {inpc=1} inpc && /^spec:$/ && ms>0 {print "  delay:\n    durationMilliseconds: " ms; inpc=0}' \
      "$HERE/kwok/stages.yaml" >"$DIR/stages.yaml"
    # Stages are objects of the API server (kwok's Stage CRD, --enable-crds=Stage), not a --config file,
    # so that a test can give pods of a stage/variant their own run time on the running cluster
    # (sim/stages.ts applyStageDurations); kwok watches them and applies changes without a restart.
    kubectl apply --server-side -f "$HERE/kwok/stage-crd.yaml" >/dev/null
    wait_for "Stage CRD" 60 kubectl wait --for=condition=Established crd/stages.kwok.x-k8s.io --timeout=2s
    kubectl apply --server-side --field-manager=cot-vr-e2e -f "$DIR/stages.yaml" >/dev/null
    start_bg kwok kwok --kubeconfig "$KUBECONFIG" --enable-crds=Stage \
      --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
      --node-ip 10.0.0.1 --cidr 10.0.0.1/16 --server-address "127.0.0.1:$kwok_port" --node-lease-duration-seconds 40
  fi
  start_bg provisioner node "$HERE/provisioner.mjs" "$KUBECONFIG"

  kubectl apply -f "$HERE/kwok/storageclasses.yaml" >/dev/null
  if [[ "$NODES" == kwok ]]; then
    kubectl create -f "$HERE/kwok/nodes.yaml" >/dev/null
    # COT_E2E_GPU_NODES > 2 adds copies of mi300x-1 (no product-name label).
    local n
    for ((n = 2; n < ${COT_E2E_GPU_NODES:-2}; n++)); do
      awk -v RS='---\n' -v ORS='' '/name: mi300x-1\n/ {print}' "$HERE/kwok/nodes.yaml" | sed "s/mi300x-1/mi300x-$n/g" | kubectl create -f - >/dev/null
    done
    wait_for "nodes Ready" 60 kubectl wait --for=condition=Ready node --all --timeout=2s
    wait_for "not-ready taints removed" 60 bash -c '! kubectl get nodes -o jsonpath="{.items[*].spec.taints[*].key}" | grep -q node.kubernetes.io/'
  fi
  wait_for "default ServiceAccount" 60 kubectl -n default get serviceaccount default
  log "up in $((SECONDS - t0))s: KUBECONFIG=$KUBECONFIG"
}

case "$cmd" in
  start)
    # Anything that fails half-way stops what was already started.
    trap 'rc=$?; if [[ $rc != 0 ]]; then log "start failed; logs:"; tail -n 20 "$DIR"/logs/*.log >&2 || true; stop_all; fi' EXIT
    start_all
    trap - EXIT
    ;;
  stop) stop_all ;;
  status)
    export KUBECONFIG="$DIR/kubeconfig"
    cat "$DIR/pids" 2>/dev/null || echo "not running"
    kubectl get nodes -o wide 2>/dev/null || true
    ;;
  *) echo "usage: $0 start|stop|status DIR" >&2; exit 2 ;;
esac
