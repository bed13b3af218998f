"""Test stand-in for `tune run <lora recipe>` (run by fakes/tune): writes what torchtune 0.6.1's recipe +
FullModelHFCheckpointer write at each epoch end, in the same order, and resumes the way the
recipe does -- using torchtune's own lookup functions, so the test proves that after train.py's
clean-up torchtune finds the newest complete epoch.

Env: FAKE_TUNE_LOG (JSON lines of invocations), FAKE_TUNE_CRASH_IN_SAVE=<epoch> (die after the
weights of that epoch, before its adapter), FAKE_TUNE_FAIL=1 (write the
metric logger's log file, then exit 1: a run that fails before its first epoch).
"""
import json
import os
import sys
from pathlib import Path

import torch

args = sys.argv[1:]
if args[0] == "--config":  # run as a recipe file (`python <recipe> --config ...`), as train.py runs the image's patched recipe
    args = ["run", sys.argv[0], *args]
assert args[0] == "run" and args[2] == "--config", args
overrides = dict(a.split("=", 1) for a in args[4:])
out = Path(overrides["output_dir"])
epochs = int(overrides["epochs"])
resume = overrides["resume_from_checkpoint"] == "True"
record = {"recipe": args[1], "config": args[3], "overrides": overrides}
if os.environ.get("FAKE_TUNE_FAIL"):
    # the recipe's DiskLogger opens ${output_dir}/logs/log_<unix time>.txt in setup, before the model loads
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "logs" / "log_1700000000.txt").write_text("Step 0 | failed before the first epoch\n")
    sys.exit(1)

start = 0
if resume:
    from torchtune.training.checkpointing._utils import get_adapter_checkpoint_path, get_recipe_checkpoint_path

    state_path = get_recipe_checkpoint_path(out, None, should_load_recipe_state=True)
    adapter = get_adapter_checkpoint_path(out, None, should_load_recipe_state=True)
    if adapter is None:  # the recipe: "Adapter weights not found. ..."
        print("ValueError: Adapter weights not found.", file=sys.stderr)
        sys.exit(1)
    start = torch.load(state_path, weights_only=True)["epochs_run"]
    record["resumed_adapter"] = str(Path(adapter).relative_to(out))
    record["resumed_epochs_run"] = start
with open(os.environ["FAKE_TUNE_LOG"], "a") as handle:
    handle.write(json.dumps(record) + "\n")

crash = int(os.environ.get("FAKE_TUNE_CRASH_IN_SAVE", "-1"))
for epoch in range(start, epochs):
    epochs_run = epoch + 1
    folder = out / f"epoch_{epoch}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model-00001-of-00001.safetensors").write_bytes(b"weights")
    if epoch == crash:
        os._exit(137)  # killed mid-save: weights, no index, no adapter, no recipe_state update
    (folder / "model.safetensors.index.json").write_text("{}")
    torch.save({"lora_a": torch.zeros(2)}, folder / "adapter_model.pt")
    (folder / "config.json").write_text("{}")
    if epoch + 1 < epochs:
        (out / "recipe_state").mkdir(parents=True, exist_ok=True)
        torch.save({"epochs_run": epochs_run, "seed": 1, "total_epochs": epochs, "max_steps_per_epoch": None},
                   out / "recipe_state" / "recipe_state.pt")
