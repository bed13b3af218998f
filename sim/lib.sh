# Helpers shared by sim/cluster.sh and sim/node.sh (sourced, not run). The caller defines `log` and
# sets DIR (logs go to $DIR/logs) and PIDS (the file that records what start_bg started, which the
# caller's stop reads).

# A free TCP port on ADDR (default 127.0.0.1), asked of node (always installed here, unlike python).
free_port() { # [addr]
  node -e 'const s=require("net").createServer();s.listen(0,process.argv[1],()=>{console.log(s.address().port);s.close()})' "${1:-127.0.0.1}"
}

# Start a long-running process in the background, output to $DIR/logs/NAME.log, its pid recorded in $PIDS.
start_bg() { # name cmd...
  local name="$1"; shift
  "$@" >"$DIR/logs/$name.log" 2>&1 &
  echo "$! $name" >>"$PIDS"
}

# Poll CMD until it succeeds or SECONDS have passed (then log and fail).
wait_for() { # description seconds cmd...
  local what="$1" secs="$2"; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS > end )); then log "timed out waiting for $what"; return 1; fi
    sleep 0.3
  done
}
