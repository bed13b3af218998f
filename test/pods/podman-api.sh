#!/usr/bin/env bash
# Can the stack's own image path (images.build: true -> @pulumi/docker's docker.Image) build and push
# against podman's Docker-compatible API on this machine? A probe, not a test: it replays, with curl,
# the Docker Engine API calls the docker provider makes (pulumi-docker provider/image.go: a BuildKit
# session, POST /build with version=2, GET /images/json, POST /images/<name>/push, then the digest it
# records) against `podman system service` (Debian's podman 4.3.1) and Debian's docker-registry, and
# prints what works and what does not. The provider plugin itself cannot run here (see
# test/pods/PODMAN.md): nothing in this script needs it.
#
#   bash test/pods/podman-api.sh [WORKDIR]     (root; WORKDIR is removed first, default a temp dir)
set -euo pipefail
W=${1:-$(mktemp -d /tmp/cotvr-podman-api.XXXXXX)}
PORT=${COT_PODS_PROBE_PORT:-5077}
rm -rf "$W"; mkdir -p "$W/ctx/probe" "$W/bb/bin" "$W/registry"
log() { printf '[podman-api] %s\n' "$*" >&2; }
P=(podman --root "$W/root" --runroot "$W/run" --storage-driver overlay)
API=(curl -sS --unix-socket "$W/podman.sock")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; "${P[@]}" system reset -f >/dev/null 2>&1 || true; }
trap cleanup EXIT

command -v podman >/dev/null || { log "podman is not installed (apt-get install podman)"; exit 2; }
log "podman $(podman --version | awk '{print $3}'), docker-registry $(docker-registry --version 2>/dev/null | awk '{print $3}')"

# A base image without any registry: Debian's static busybox as a one-layer image.
cp /bin/busybox "$W/bb/bin/"; for a in sh cat echo; do ln -s busybox "$W/bb/bin/$a"; done
tar -C "$W/bb" -cf "$W/bb.tar" .
"${P[@]}" import -q "$W/bb.tar" localhost/busybox:probe >/dev/null

cat >"$W/registry/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $W/registry/data}}
http: {addr: 127.0.0.1:$PORT}
EOF
docker-registry serve "$W/registry/config.yml" >"$W/registry/log" 2>&1 & pids+=($!)
# The registry is plain HTTP: podman pushes to it only when registries.conf says it is insecure.
printf 'unqualified-search-registries = []\n[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' "$PORT" >"$W/registries.conf"
CONTAINERS_REGISTRIES_CONF="$W/registries.conf" "${P[@]}" system service --time=0 "unix://$W/podman.sock" >"$W/service.log" 2>&1 & pids+=($!)
for _ in $(seq 50); do "${API[@]}" -f http://d/_ping >/dev/null 2>&1 && curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.2; done
log "Docker API version podman reports: $("${API[@]}" http://d/version | python3 -c 'import json,sys; print(json.load(sys.stdin)["ApiVersion"])')"

# The project's Dockerfile features (syntax line, ARG before FROM, SHELL, COPY from the context's
# subfolder, a build arg), in a Dockerfile one folder below the context, as images/<name>/Dockerfile is.
cat >"$W/ctx/probe/Dockerfile" <<'EOF'
# syntax=docker/dockerfile:1.7
ARG BASE_IMAGE=localhost/busybox:probe
FROM ${BASE_IMAGE}
ARG FLAVOR=real
SHELL ["/bin/sh", "-c"]
COPY probe/hello.txt /opt/hello.txt
RUN echo "flavor=$FLAVOR" > /opt/flavor && cat /opt/hello.txt
CMD ["cat", "/opt/flavor"]
EOF
echo hello >"$W/ctx/probe/hello.txt"
tar -C "$W/ctx" -cf "$W/ctx.tar" probe
IMAGE="127.0.0.1:$PORT/cot-vr-probe:v1"

# 1. The provider opens a BuildKit session first (its default builder is BuildKit).
code=$("${API[@]}" -o /dev/null -w '%{http_code}' -X POST -H 'Connection: Upgrade' -H 'Upgrade: h2c' http://d/v1.41/session)
log "1. BuildKit session (POST /session): HTTP $code (the provider logs a warning and builds without it)"

# 2. The build, with the query the Docker client sends for this provider's options.
q="t=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$IMAGE")"
q+="&dockerfile=probe%2FDockerfile&version=2&session=probe&rm=1&networkmode=&cpusetcpus=&cpusetmems=&cpushares=0"
q+="&cpuquota=0&cpuperiod=0&memory=0&memswap=0&cgroupparent=&shmsize=0&target=&ulimits=null&labels=%7B%7D&cachefrom=null"
q+="&buildargs=%7B%22FLAVOR%22%3A%22cpu%22%7D&platform=linux%2Famd64"
"${API[@]}" -X POST -H 'Content-Type: application/x-tar' -H "X-Registry-Config: $(printf '{}' | base64 -w0)" \
    --data-binary @"$W/ctx.tar" "http://d/v1.41/build?$q" >"$W/build.json"
id=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    m = json.loads(l)
    if "error" in m: sys.exit("build error: " + m["error"])
    if "aux" in m and "ID" in m["aux"]: print(m["aux"]["ID"])' "$W/build.json")
listed=$("${API[@]}" http://d/v1.41/images/json | python3 -c 'import json,sys; print(" ".join(i["Id"] for i in json.load(sys.stdin)))')
[[ " $listed " == *" $id "* ]] && log "2. build: ok, aux ID $id, listed by GET /images/json (the provider polls for it)" \
    || { log "2. build: the image $id is not in GET /images/json"; exit 1; }

# 2b. Heredocs (RUN <<EOF, BuildKit's Dockerfile 1.4 syntax): podman 4.3 builds with buildah 1.28.
printf 'FROM localhost/busybox:probe\nRUN cat <<EOF >/heredoc\nhello\nEOF\n' >"$W/ctx/probe/Dockerfile.heredoc"
tar -C "$W/ctx" -cf "$W/heredoc.tar" probe
if "${API[@]}" -X POST -H 'Content-Type: application/x-tar' --data-binary @"$W/heredoc.tar" \
    "http://d/v1.41/build?t=heredoc&dockerfile=probe%2FDockerfile.heredoc&version=2" | grep -q '"error"'; then
    log "2b. a Dockerfile with a heredoc: fails (the heredoc's lines are read as instructions)"
else
    log "2b. a Dockerfile with a heredoc: builds"
fi

# 3. The push, with X-Registry-Auth as the provider sends it, and the digest it would record.
auth=$(printf '{"username":"","password":"","serveraddress":"127.0.0.1:%s"}' "$PORT" | base64 -w0)
"${API[@]}" -X POST -H "X-Registry-Auth: $auth" "http://d/v1.41/images/${IMAGE%:*}/push?tag=v1" >"$W/push.json"
remote=$(curl -sSI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://127.0.0.1:$PORT/v2/cot-vr-probe/manifests/v1" | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}' | tr -d '\r')
log "3. push: the registry has cot-vr-probe:v1 at $remote"
aux=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d = (json.loads(l).get("aux") or {}).get("Digest")
    if d: print(d)' "$W/push.json")
if [ -n "$aux" ]; then
    recorded=$aux; log "   the push reports the digest (aux): $aux"
else
    # No aux message: the provider falls back to the local store's RepoDigests for that repository.
    recorded=$("${API[@]}" "http://d/v1.41/images/$id/json" | python3 -c 'import json,sys
for d in json.load(sys.stdin).get("RepoDigests") or []:
    if d.startswith(sys.argv[1] + "@"): print(d.split("@")[1])' "${IMAGE%:*}")
    log "   the push reports no digest (no aux message): the provider records the local one, ${recorded:-none}"
fi
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.manifest.v1+json' \
    "http://127.0.0.1:$PORT/v2/cot-vr-probe/manifests/${recorded:-none}")
if [ "$recorded" = "$remote" ]; then
    log "VERDICT: builds and pushes; the recorded digest is the registry's"
else
    log "VERDICT: builds and pushes, but the digest the stack would run (repoDigest) is not the registry's: GET manifest -> HTTP $code"
fi
