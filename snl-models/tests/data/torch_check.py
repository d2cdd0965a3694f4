"""Used by tests/torch_interop.rs: loads a checkpoint saved by snl-models into the PyTorch
reference model with load_state_dict(strict=True) and compares it with the reference.

  torch_check.py REFERENCE_PY FIXTURE_DIR SAVED.safetensors RUST_OUT.safetensors

FIXTURE_DIR is a torch_ref.py fixture; the Rust side loaded its model, ran one
train-mode forward on its batch (updating the BN statistics), saved the model as
SAVED.safetensors and its eval-mode logits after the update as RUST_OUT (`eval_logits`).
Prints one JSON line with the largest differences; exits non-zero on a failure."""
import argparse, importlib.util, json, sys
import torch
from safetensors.torch import load_file

ref_path, fixture, saved, rust_out = sys.argv[1:5]
spec = importlib.util.spec_from_file_location("torch_ref", ref_path)
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)

e = json.load(open(f"{fixture}/expected.json"))
a = argparse.Namespace(arch=e["arch"], classes=e["classes"], width=e["width"], image=e["image"],
                       stem_relu=e["stem_relu"], granularity=e["granularity"], depth=e["depth"], k=e["k"],
                       final_relu=e["final_relu"])
# PyTorch's own update of the fixture model on the same batch.
torch_model = ref.build(a)
torch_model.load_state_dict(load_file(f"{fixture}/model.safetensors"), strict=True)
batch = load_file(f"{fixture}/batch.safetensors")
torch_model.train()
with torch.no_grad():
    torch_model(batch["x"])
# The model snl saved, loaded strictly.
snl_model = ref.build(a)
sd = load_file(saved)
snl_model.load_state_dict(sd, strict=True)
report = {"keys": len(sd)}
worst = 0.0
for k, v in torch_model.state_dict().items():
    if k.endswith("num_batches_tracked"):
        assert sd[k].dtype == torch.int64, f"{k} is {sd[k].dtype}"
        assert int(sd[k]) == int(v), f"{k}: {int(sd[k])} vs {int(v)}"
    else:
        worst = max(worst, (sd[k] - v).abs().max().item())
report["max_state_diff"] = worst
snl_model.eval()
with torch.no_grad():
    logits = snl_model(batch["x"])
report["max_eval_logit_diff"] = (logits - load_file(rust_out)["eval_logits"]).abs().max().item()
print(json.dumps(report))
ok = worst < 1e-5 and report["max_eval_logit_diff"] < 1e-4
sys.exit(0 if ok else 1)
