#!/usr/bin/env bash
# What can be checked of the pods tier's images without a kubelet: each image's programs run, as a
# non-root user with HOME=/tmp as in the pods, and the two fakes answer what the stack asks of them:
#   trainer  the pinned versions import; every program's --help; download_model.py (the real program)
#            downloads the 11B repo from the fake hub (exit 0) and is refused without a token (exit 3);
#            datasets.load_dataset("HuggingFaceM4/ChartQA") reads the fake hub's dataset
#   datagen  synthetic-data-kit imports; every program's --help
#   hub      serves on its port, gated models (401 without a token)
#   vllm     the teacher's command line (`vllm serve <model dir> --served-model-name ... --port 8000`):
#            /health, /v1/models lists the served name, a chat completion ends with "Final answer:"
#
#   COT_PODS_IMAGE_TRAINER=<ref> COT_PODS_IMAGE_DATAGEN=<ref> COT_PODS_IMAGE_VLLM=<ref> COT_PODS_IMAGE_HUB=<ref> \
#       bash test/pods/check-images.sh
# Refs are local (localhost/...) or in the local registry (pulled over plain HTTP, with
# COT_PODS_REGISTRY_USER/_PASSWORD when set). buildah's store: $COT_PODS_CACHE/buildah, as images.sh uses it.
set -euo pipefail
CACHE="${COT_PODS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cot-vr-pods}"
export BUILDAH_ISOLATION=chroot   # host network, no runc: the fakes listen on 127.0.0.1
B=(buildah --root "$CACHE/buildah/root" --runroot "$CACHE/buildah/run" --storage-driver overlay)
USER_ID=${COT_PODS_UID:-10001}
MODEL=meta-llama/Llama-3.2-11B-Vision-Instruct
TEACHER=meta-llama/Llama-3.2-90B-Vision-Instruct
log() { printf '[check-images] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
for n in TRAINER DATAGEN VLLM HUB; do v="COT_PODS_IMAGE_$n"; [[ -n "${!v:-}" ]] || die "$v is not set (images.sh push prints it)"; done

WORK=$(mktemp -d /tmp/cotvr-check-images.XXXXXX); chmod 777 "$WORK"
containers=(); pgids=()
cleanup() {
    local p c
    for p in "${pgids[@]}"; do kill -- "-$p" 2>/dev/null || true; done
    for c in "${containers[@]}"; do "${B[@]}" rm "$c" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

creds=(); [[ -n "${COT_PODS_REGISTRY_USER:-}" ]] && creds=(--creds "$COT_PODS_REGISTRY_USER:$COT_PODS_REGISTRY_PASSWORD")
# from VAR REF: a working container of REF in VAR (not in a subshell: cleanup must see every container)
from() { local c; c=$("${B[@]}" from --quiet --tls-verify=false "${creds[@]}" "$2") || die "cannot get image $2"; containers+=("$c"); printf -v "$1" %s "$c"; }
# run CONTAINER CMD...: as the pods run it (non-root, HOME=/tmp), the work folder mounted at /work
run() { local c="$1"; shift; "${B[@]}" run --user "$USER_ID:$USER_ID" --env HOME=/tmp --volume "$WORK:/work" "$c" -- "$@"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done; return 1; }
# serve NAME CONTAINER CMD...: in the background, in a process group of its own (stopped at exit)
serve() {
    local name="$1" c="$2"; shift 2
    setsid "${B[@]}" run --user "$USER_ID:$USER_ID" --env HOME=/tmp --volume "$WORK:/work" "$c" -- "$@" >"$WORK/$name.log" 2>&1 &
    pgids+=($!)
}
step() { log "$1 (at ${SECONDS}s)"; }

step "images: getting the four images"
from trainer "$COT_PODS_IMAGE_TRAINER"; from datagen "$COT_PODS_IMAGE_DATAGEN"
from vllm "$COT_PODS_IMAGE_VLLM"; from hub "$COT_PODS_IMAGE_HUB"

step "trainer: versions and every program's --help"
run "$trainer" python -c '
import torch, torchao, torchtune, lm_eval
from importlib.metadata import version
assert torch.version.hip is None and torch.ones(2).sum() == 2
print("torch", torch.__version__, "torchtune", version("torchtune"), "torchao", version("torchao"), "lm-eval", version("lm-eval"))'
for p in download_model train sample evaluate report bench_finetune; do
    run "$trainer" python "/opt/cotvr/$p.py" --help >/dev/null || die "trainer: $p.py --help"
done

step "datagen: synthetic-data-kit and every program's --help"
run "$datagen" python -c 'from importlib.metadata import version; import synthetic_data_kit; print("synthetic-data-kit", version("synthetic-data-kit"))'
for p in generate_cot check_cot teacher_scale; do
    run "$datagen" python "/opt/cotvr/$p.py" --help >/dev/null || die "datagen: $p.py --help"
done

step "hub: serving"
HUB_PORT=$(free_port)
serve hub "$hub" python /opt/hub/hub.py --root /srv/hub --port "$HUB_PORT"
wait_http "http://127.0.0.1:$HUB_PORT/api/models/$MODEL" || { cat "$WORK/hub.log" >&2; die "hub: not serving"; }
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HUB_PORT/api/models/$MODEL/revision/main")
[[ "$code" == 401 ]] || die "hub: a gated model without a token answers $code, not 401"

step "trainer: download_model.py from the hub"
hf=(env HF_ENDPOINT="http://127.0.0.1:$HUB_PORT" HF_HOME=/work/hf-home)
run "$trainer" "${hf[@]}" HF_TOKEN=hf_pods python /opt/cotvr/download_model.py --repo-id "$MODEL" --dest /work/models/11b \
    --ignore 'original/consolidated*.pth' --require config.json --require original/tokenizer.model --shards 5 \
    || die "trainer: download_model.py"
[[ -f "$WORK/models/11b/.complete.json" && ! -e "$WORK/models/11b/original/consolidated.00.pth" ]] \
    || die "trainer: the download has no marker, or kept the ignored original/consolidated*.pth"
rc=0; run "$trainer" "${hf[@]}" HF_TOKEN= python /opt/cotvr/download_model.py --repo-id "$MODEL" --dest /work/models/none \
    --require config.json --shards 5 2>"$WORK/notoken.err" || rc=$?
[[ $rc == 3 ]] || { cat "$WORK/notoken.err" >&2; die "trainer: download_model.py without a token exits $rc, not 3"; }

step "trainer: load_dataset(HuggingFaceM4/ChartQA) from the hub"
run "$trainer" "${hf[@]}" python -c '
import datasets
d = datasets.load_dataset("HuggingFaceM4/ChartQA")
assert {"train", "val", "test"} <= set(d), d
row = d["train"][0]
print({k: len(v) for k, v in d.items()}, sorted(row))'

step "vllm: the teacher's command line"
VLLM_PORT=$(free_port)
mkdir -p "$WORK/models/90b" && echo '{}' >"$WORK/models/90b/config.json"
serve vllm "$vllm" vllm serve /work/models/90b --served-model-name "$TEACHER" --host 0.0.0.0 --port "$VLLM_PORT" \
    --max-model-len 8192 --max-num-seqs 8 --tensor-parallel-size 1 --gpu-memory-utilization 0.9
wait_http "http://127.0.0.1:$VLLM_PORT/health" || { cat "$WORK/vllm.log" >&2; die "vllm: /health does not answer"; }
[[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$VLLM_PORT/health")" == 200 ]] || die "vllm: /health is not 200"
curl -s "http://127.0.0.1:$VLLM_PORT/v1/models" | python3 -c 'import json,sys; ids = [m["id"] for m in json.load(sys.stdin)["data"]]; assert sys.argv[1] in ids, ids' "$TEACHER" \
    || die "vllm: /v1/models does not list $TEACHER"
curl -s "http://127.0.0.1:$VLLM_PORT/v1/chat/completions" -H 'Content-Type: application/json' -d "$(python3 -c 'import json,sys; print(json.dumps({"model": sys.argv[1], "messages": [{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}, {"type": "text", "text": "Question: how many? Final answer: 14"}]}]}))' "$TEACHER")" \
    | python3 -c 'import json,sys; t = json.load(sys.stdin)["choices"][0]["message"]["content"]; assert t.rstrip().endswith("Final answer: 14"), t; print("teacher:", t)' \
    || die "vllm: the chat completion does not end with the prompt's final answer"

step "all images checked"
