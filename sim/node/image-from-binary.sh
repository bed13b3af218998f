#!/usr/bin/env bash
# An image of one static binary (the pause image: there is no registry to pull it from), made with
# umoci and skopeo from Debian's packages, written as a docker-archive that `ctr images import` reads.
#
#   bash sim/node/image-from-binary.sh BINARY PATH-IN-IMAGE REF OUT.tar
set -euo pipefail
bin="$1" dest="$2" ref="$3" out="$4"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
umoci init --layout "$tmp/oci"
umoci new --image "$tmp/oci:img"
umoci unpack --image "$tmp/oci:img" "$tmp/bundle" >/dev/null
install -D -m 0755 "$bin" "$tmp/bundle/rootfs$dest"
umoci repack --image "$tmp/oci:img" "$tmp/bundle"
umoci config --image "$tmp/oci:img" --config.entrypoint "$dest" --config.user 65535:65535 \
  --architecture amd64 --os linux
rm -f "$out"
skopeo copy --quiet "oci:$tmp/oci:img" "docker-archive:$out:$ref"
