#!/usr/bin/env bash
# The pods tier's images, built here with buildah (Debian's package; no Docker engine, no registry to
# pull bases from) and served by a local registry (Debian's docker-registry, distribution 2.8).
#
#   bash test/pods/images.sh build                 build what is missing (cached by content, below)
#   bash test/pods/images.sh registry start DIR [--auth]
#                                                  start a registry on 127.0.0.1:<free port> (config, log, pid
#                                                  in DIR); prints `export COT_PODS_REGISTRY=127.0.0.1:<port>`;
#                                                  --auth: htpasswd auth, also prints COT_PODS_REGISTRY_USER/_PASSWORD
#   bash test/pods/images.sh push                  push every image to $COT_PODS_REGISTRY (with those credentials
#                                                  when set); prints
#                                                  `export COT_PODS_IMAGE_<NAME>=<registry>/<name>:<tag>` lines
#   bash test/pods/images.sh registry stop DIR
#
# Images (tag = a hash of everything that goes into it, so an unchanged image is never rebuilt):
#   cot-vr-base-cpu   Debian bookworm (debootstrap --variant=minbase from the Debian mirror), python 3.11 in
#                     /opt/venv as `python`, git, this machine's CA bundle (pip reaches PyPI from the builds)
#   cot-vr-torch-cpu  + torch 2.6.0 and torchvision 0.21.0 (the ROCm base's versions): the CPU stand-in for rocm/pytorch
#   cot-vr-trainer    images/trainer/Dockerfile, BASE_IMAGE=cot-vr-torch-cpu, ACCEL=cpu (the CPU twin)
#   cot-vr-trainer-tiny  the trainer twin + test/python/tinyvision.py on PYTHONPATH (the tiny models' builders)
#   cot-vr-datagen    images/datagen/Dockerfile, BASE_IMAGE=cot-vr-base-cpu (the CPU twin)
#   cot-vr-vllm       test/pods/fakes/teacher: a fake `vllm serve` (the teacher's command, port, probes)
#   cot-vr-hub        test/pods/fakes/hub: a fake Hugging Face hub with tiny model repos (the 11B: a real tiny
#                     checkpoint of test/python/tinyvision.py) and a ChartQA look-alike
# buildah keeps them in its own store under $COT_PODS_CACHE/buildah.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${COT_PODS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cot-vr-pods}"
MIRROR="${COT_PODS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export BUILDAH_ISOLATION=chroot   # RUN steps in a chroot: no runc and no network namespace needed
BUILDAH=(buildah --root "$CACHE/buildah/root" --runroot "$CACHE/buildah/run" --storage-driver overlay)
NAMES=(trainer tiny datagen vllm hub)
log() { printf '[images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# torch/torchvision of the CPU twin: the version the ROCm base ships (rocm/pytorch ..._pytorch_release_2.6.0,
# which the trainer's lock is resolved against: e.g. its sympy pin is torch 2.6's) and its torchvision.
TORCH_PINS=(torch==2.6.0 torchvision==0.21.0)
hash_of() { # files and strings -> 16 hex; a file in the checkout by its path in it, so a clone elsewhere hits the cache
  local x
  for x in "$@"; do
    if [[ -f "$x" ]]; then (cd "$ROOT" && sha256sum "${x#"$ROOT"/}"); else echo "$x"; fi
  done | sha256sum | cut -c1-16
}
have() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }
timed() { local t0=$SECONDS rc=0; "$@" || rc=$?; log "  ... $((SECONDS - t0))s"; return $rc; }

BASE_KEY=$(hash_of base-v1 "$MIRROR" /etc/ssl/certs/ca-certificates.crt)
TORCH_KEY=$(hash_of "$BASE_KEY" "${TORCH_PINS[@]}")
tree_files() { find "$@" -type f ! -name '*.pyc' | sort; }
TRAINER_KEY=$(hash_of "$TORCH_KEY" $(tree_files "$ROOT/images/trainer" "$ROOT/images/common"))
TINY_KEY=$(hash_of tiny-v2 "$TRAINER_KEY" "$ROOT/test/python/tinyvision.py")
DATAGEN_KEY=$(hash_of "$BASE_KEY" $(tree_files "$ROOT/images/datagen" "$ROOT/images/common"))
VLLM_KEY=$(hash_of "$BASE_KEY" $(tree_files "$HERE/fakes/teacher"))
# the hub's 11B repo is tinyvision's tiny model (make_content.py imports it): a change there rebuilds the hub
HUB_KEY=$(hash_of "$BASE_KEY" $(tree_files "$HERE/fakes/hub") "$ROOT/test/python/tinyvision.py")
ref() { # name -> local image reference
  case "$1" in
    base) echo "localhost/cot-vr-base-cpu:$BASE_KEY" ;;
    torch) echo "localhost/cot-vr-torch-cpu:$TORCH_KEY" ;;
    trainer) echo "localhost/cot-vr-trainer:cpu-$TRAINER_KEY" ;;
    tiny) echo "localhost/cot-vr-trainer-tiny:cpu-$TINY_KEY" ;;
    datagen) echo "localhost/cot-vr-datagen:cpu-$DATAGEN_KEY" ;;
    vllm) echo "localhost/cot-vr-vllm:fake-$VLLM_KEY" ;;
    hub) echo "localhost/cot-vr-hub:fake-$HUB_KEY" ;;
  esac
}

build_base() {
  local work; work=$(mktemp -d "$CACHE/tmp.XXXXXX")
  log "base: debootstrap bookworm (minbase, python3, git) from $MIRROR"
  # (the redirection inside: timed's own line goes to the terminal, not to the log)
  timed bash -c 'exec debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,git bookworm "$1" "$2" >"$3" 2>&1' \
    _ "$work/rootfs" "$MIRROR" "$work/debootstrap.log" || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  chroot "$work/rootfs" python3 -m venv /opt/venv
  cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  local c mnt; c=$("${BUILDAH[@]}" from scratch); mnt=$("${BUILDAH[@]}" mount "$c")
  cp -a "$work/rootfs/." "$mnt/"
  "${BUILDAH[@]}" umount "$c" >/dev/null
  "${BUILDAH[@]}" config --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt --env PIP_DISABLE_PIP_VERSION_CHECK=1 \
    --cmd python "$c"
  "${BUILDAH[@]}" commit -q --rm "$c" "$(ref base)" >/dev/null
  rm -rf "$work"
}

build_torch() {
  # pip inside the image, from PyPI (the CUDA-linked wheel with its nvidia-* libraries is PyPI's only
  # Linux x86_64 torch; it runs on CPU).
  log "torch: ${TORCH_PINS[*]} into the base (pip, from PyPI)"
  local c; c=$("${BUILDAH[@]}" from "$(ref base)")
  timed "${BUILDAH[@]}" run --network host "$c" -- python -m pip install --no-cache-dir -q "${TORCH_PINS[@]}"
  "${BUILDAH[@]}" run "$c" -- python -c "import torch; assert torch.ones(2).sum() == 2; print('torch', torch.__version__)"
  "${BUILDAH[@]}" commit -q --rm "$c" "$(ref torch)" >/dev/null
}

build_tiny() {
  # The trainer twin plus the tiny Llama 3.2 Vision builders (test/python/tinyvision.py) on its python
  # path: stacks name them in recipeOverrides (model._component_), the pods run the shipped programs.
  log "tiny: the trainer twin + tinyvision.py"
  local c; c=$("${BUILDAH[@]}" from "$(ref trainer)")
  "${BUILDAH[@]}" copy "$c" "$ROOT/test/python/tinyvision.py" /opt/cotvr-tiny/tinyvision.py >/dev/null
  "${BUILDAH[@]}" config --env PYTHONPATH=/opt/cotvr-tiny "$c"
  "${BUILDAH[@]}" run "$c" -- python -c "import tinyvision; tinyvision.tiny_lora_llama3_2_vision(['q_proj'])"
  # docker format, as bud --format docker writes the others: push's "already there" check asks for a
  # docker manifest, which the registry cannot make of an OCI one (it would push again every run)
  "${BUILDAH[@]}" commit -q --rm --format docker "$c" "$(ref tiny)" >/dev/null
}

bud() { # name context dockerfile build-args...
  local name="$1" ctx="$2" file="$3"; shift 3
  log "$name: buildah bud -f ${file#$ROOT/} ${*}"
  local t0=$SECONDS
  "${BUILDAH[@]}" bud --quiet --format docker --network host --layers=false -f "$file" -t "$(ref "$name")" "$@" "$ctx" \
    >"$CACHE/$name.build.log" 2>&1 || { tail -30 "$CACHE/$name.build.log" >&2; die "$name: build failed (log: $CACHE/$name.build.log)"; }
  log "  ... $((SECONDS - t0))s"
}

build_hub_context() { # the hub's files are made with the Python tier's venv (torchtune, datasets, pillow)
  local ctx="$1" py
  py=$(bash "$ROOT/test/python/run.sh" --print-python)
  mkdir -p "$ctx"
  cp "$HERE/fakes/hub/hub.py" "$HERE/fakes/hub/Dockerfile" "$ctx/"
  "$py" "$HERE/fakes/hub/make_content.py" "$ctx/content" 2>/dev/null
}

build() {
  mkdir -p "$CACHE/buildah"
  local t0=$SECONDS
  have "$(ref base)" && log "base: cached $(ref base)" || build_base
  have "$(ref torch)" && log "torch: cached $(ref torch)" || build_torch
  have "$(ref trainer)" && log "trainer: cached $(ref trainer)" \
    || bud trainer "$ROOT/images" "$ROOT/images/trainer/Dockerfile" --build-arg "BASE_IMAGE=$(ref torch)" --build-arg ACCEL=cpu
  have "$(ref tiny)" && log "tiny: cached $(ref tiny)" || build_tiny
  have "$(ref datagen)" && log "datagen: cached $(ref datagen)" \
    || bud datagen "$ROOT/images" "$ROOT/images/datagen/Dockerfile" --build-arg "BASE_IMAGE=$(ref base)"
  have "$(ref vllm)" && log "vllm: cached $(ref vllm)" \
    || bud vllm "$HERE/fakes/teacher" "$HERE/fakes/teacher/Dockerfile" --build-arg "BASE_IMAGE=$(ref base)"
  if have "$(ref hub)"; then log "hub: cached $(ref hub)"; else
    local ctx; ctx=$(mktemp -d "$CACHE/tmp.XXXXXX")
    build_hub_context "$ctx"
    bud hub "$ctx" "$ctx/Dockerfile" --build-arg "BASE_IMAGE=$(ref base)"
    rm -rf "$ctx"
  fi
  # images of older content (another tag of the same name) go: the store keeps one of each
  local n old
  for n in base torch "${NAMES[@]}"; do
    for old in $("${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}}' | grep "^$(ref "$n" | cut -d: -f1):" | grep -vx "$(ref "$n")"); do
      "${BUILDAH[@]}" rmi "$old" >/dev/null 2>&1 && log "removed older $old" || true
    done
  done
  log "built in $((SECONDS - t0))s; sizes:"
  "${BUILDAH[@]}" images --format '[images]   {{.Name}}:{{.Tag}}  {{.Size}}' >&2
}

registry() { # start|stop DIR [--auth]
  local action="$1" dir="$2" auth="${3:-}"
  [[ -n "$dir" ]] || die "registry start|stop DIR [--auth]"
  mkdir -p "$dir"
  case "$action" in
    start)
      [[ -z "$auth" || "$auth" == --auth ]] || die "registry start: unknown option '$auth' (allowed: --auth)"
      command -v docker-registry >/dev/null || die "docker-registry is not installed (test/pods/packages.sh installs it)"
      [[ ! -f "$dir/pid" ]] || ! kill -0 "$(cat "$dir/pid")" 2>/dev/null || die "a registry already runs from $dir (pid $(cat "$dir/pid"))"
      local port user password code=000
      port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
      mkdir -p "$CACHE/registry"
      # The blob store is in the cache: a second run's pushes find their layers already there.
      cat >"$dir/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $CACHE/registry}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$port}
EOF
      if [[ -n "$auth" ]]; then
        # htpasswd (basic) auth: without credentials every pull and push gets 401, so that a stack's
        # imagePullSecrets path can be exercised against it.
        command -v htpasswd >/dev/null || die "--auth needs htpasswd (apt-get install apache2-utils)"
        user=cotvr; password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
        htpasswd -cbB "$dir/htpasswd" "$user" "$password" 2>/dev/null   # distribution reads bcrypt entries only
        echo "auth: {htpasswd: {realm: cot-vr-pods, path: $dir/htpasswd}}" >>"$dir/config.yml"
      fi
      docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
      echo $! >"$dir/pid"
      for _ in $(seq 1 50); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
        [[ "$code" == 200 || "$code" == 401 ]] && break
        sleep 0.2
      done
      [[ "$code" == 200 || "$code" == 401 ]] || die "the registry did not start (log: $dir/registry.log)"
      if [[ -n "$auth" ]]; then
        [[ "$code" == 401 ]] || die "the registry answers without credentials although --auth is set"
        [[ "$(curl -s -o /dev/null -w '%{http_code}' -u "$user:$password" "http://127.0.0.1:$port/v2/")" == 200 ]] \
          || die "the registry refuses its own credentials (log: $dir/registry.log)"
        printf 'export COT_PODS_REGISTRY_USER=%s COT_PODS_REGISTRY_PASSWORD=%s\n' "$user" "$password"
      fi
      echo "127.0.0.1:$port" >"$dir/address"
      log "registry on 127.0.0.1:$port${auth:+ (htpasswd auth)}, blobs in $CACHE/registry"
      echo "export COT_PODS_REGISTRY=127.0.0.1:$port"
      ;;
    stop)
      [[ -f "$dir/pid" ]] || return 0
      local pid; pid=$(cat "$dir/pid")
      if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
      rm -f "$dir/pid" "$dir/address"
      ;;
    *) die "registry start|stop DIR [--auth]" ;;
  esac
}

push() {
  [[ -n "${COT_PODS_REGISTRY:-}" ]] || die "COT_PODS_REGISTRY is not set (registry start prints it)"
  local n dest repo tag t0=$SECONDS pushed=() present=()
  for n in "${NAMES[@]}"; do
    dest="$COT_PODS_REGISTRY/$(ref "$n" | sed 's|^localhost/||')"
    repo="${dest#*/}"; tag="${repo##*:}"; repo="${repo%:*}"
    # The tag is the content hash and the registry's store is in the cache: a tag it has (its manifest
    # is written after every layer) is this image, pushed by an earlier run. buildah would read all of
    # its layers again to find that out (minutes for the trainer).
    if curl -fsS -o /dev/null -I -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      ${COT_PODS_REGISTRY_USER:+-u "$COT_PODS_REGISTRY_USER:$COT_PODS_REGISTRY_PASSWORD"} \
      "http://$COT_PODS_REGISTRY/v2/$repo/manifests/$tag" 2>/dev/null; then
      present+=("$n")
    else
      # uncompressed layers: nothing to gzip on 2 cores, and containerd unpacks them as they come
      "${BUILDAH[@]}" push -q --tls-verify=false --disable-compression \
        ${COT_PODS_REGISTRY_USER:+--creds "$COT_PODS_REGISTRY_USER:$COT_PODS_REGISTRY_PASSWORD"} "$(ref "$n")" "docker://$dest" >/dev/null
      pushed+=("$n")
    fi
    echo "export COT_PODS_IMAGE_${n^^}=$dest"
  done
  log "pushed to $COT_PODS_REGISTRY in $((SECONDS - t0))s: ${pushed[*]:-none}; already there: ${present[*]:-none}"
}

case "${1:-}" in
  build) build ;;
  registry) registry "${2:-}" "${3:-}" "${4:-}" ;;
  push) push ;;
  ref) ref "${2:-}" ;;
  *) echo "usage: $0 build | registry start DIR [--auth] | registry stop DIR | push | ref NAME" >&2; exit 2 ;;
esac
