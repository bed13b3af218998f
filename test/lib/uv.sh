# Sourced by the tiers that install Python packages (test/python/run.sh, test/manifests/run.sh):
# uv (a PyPI package) resolves and installs in seconds instead of pip's long backtracking. Needs
# CACHE (the tier's cache folder), UV_VERSION, PY and log(); sets UV.
UV="$CACHE/uv-$UV_VERSION/bin/uv"
if [ ! -x "$UV" ]; then
    log "installing uv $UV_VERSION"
    rm -rf "$CACHE/uv-$UV_VERSION"
    "$PY" -m venv "$CACHE/uv-$UV_VERSION"
    "$CACHE/uv-$UV_VERSION/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
