#!/usr/bin/env bash
# A local image registry for the pods tier: Debian's docker-registry (distribution 2.8), plain HTTP on
# 127.0.0.1, optionally behind htpasswd (basic) auth so that the stack's imagePullSecrets path is
# exercised: without credentials every pull and push gets 401.
#
#   bash test/pods/registry.sh start DIR [--auth]   prints `export COT_PODS_REGISTRY=127.0.0.1:<port>` and,
#                                                   with --auth, COT_PODS_REGISTRY_USER / _PASSWORD
#   bash test/pods/registry.sh stop DIR
#
# DIR holds the config, log, pid and (with --auth) the htpasswd file. The blobs live in
# ${COT_PODS_CACHE:-~/.cache/cot-vr-pods}/registry, so a second run's pushes find their layers there.
set -euo pipefail
CACHE="${COT_PODS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cot-vr-pods}"
log() { printf '[registry] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

start() {
    local dir="$1" auth="${2:-}" port user password
    [[ -z "$auth" || "$auth" == --auth ]] || die "unknown option '$auth' (allowed: --auth)"
    command -v docker-registry >/dev/null || die "docker-registry is not installed (apt-get install docker-registry)"
    mkdir -p "$dir" "$CACHE/registry"
    [[ ! -f "$dir/pid" ]] || ! kill -0 "$(cat "$dir/pid")" 2>/dev/null || die "a registry already runs from $dir (pid $(cat "$dir/pid"))"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    {
        echo "version: 0.1"
        echo "log: {level: warn}"
        echo "storage: {filesystem: {rootdirectory: $CACHE/registry}, delete: {enabled: true}}"
        echo "http: {addr: 127.0.0.1:$port}"
    } >"$dir/config.yml"
    if [[ -n "$auth" ]]; then
        command -v htpasswd >/dev/null || die "--auth needs htpasswd (apt-get install apache2-utils)"
        user=cotvr; password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
        # distribution reads bcrypt entries only (-B)
        htpasswd -cbB "$dir/htpasswd" "$user" "$password" 2>/dev/null
        echo "auth: {htpasswd: {realm: cot-vr-pods, path: $dir/htpasswd}}" >>"$dir/config.yml"
    fi
    docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
    echo $! >"$dir/pid"
    local code=000
    for _ in $(seq 50); do
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
    log "on 127.0.0.1:$port${auth:+ (htpasswd auth)}, blobs in $CACHE/registry"
    echo "export COT_PODS_REGISTRY=127.0.0.1:$port"
}

stop() {
    local dir="$1" pid
    [[ -f "$dir/pid" ]] || { log "nothing runs from $dir"; return 0; }
    pid=$(cat "$dir/pid")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$dir/pid" "$dir/address"
    log "stopped (pid $pid)"
}

case "${1:-}:${2:-}" in
    start:?*) start "$2" "${3:-}" ;;
    stop:?*) stop "$2" ;;
    *) echo "usage: $0 start DIR [--auth] | stop DIR" >&2; exit 2 ;;
esac
