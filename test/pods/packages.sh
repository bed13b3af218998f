#!/usr/bin/env bash
# Debian packages of the pods tier (a node, an image builder, a registry and its htpasswd), installed when missing.
set -euo pipefail
PKGS=(containerd runc containernetworking-plugins iptables conntrack iproute2 umoci skopeo buildah docker-registry debootstrap busybox-static apache2-utils)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "[pods] installing ${missing[*]} (Debian)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts the registry as a service where it can; the tier runs its own (test/pods/images.sh).
