"""Loads a Taper MLP checkpoint into PyTorch and measures its MNIST test accuracy.

Shows that checkpoint names and layouts are PyTorch's: the same weights give the
same accuracy in both. Usage: python tools/check_torch_load.py RUN_DIR [DATA_ROOT]
"""
import gzip, json, sys
import numpy as np
import torch
from safetensors.torch import load_file

run = sys.argv[1]
root = sys.argv[2] if len(sys.argv) > 2 else "../shared/data"
tag = json.load(open(f"{run}/checkpoints/latest.json"))["dir"]
state = load_file(f"{run}/checkpoints/{tag}/model.safetensors")
model = torch.nn.Sequential()
model.h1 = torch.nn.Linear(*state["h1.weight"].shape[::-1])
model.h2 = torch.nn.Linear(*state["h2.weight"].shape[::-1])
model.out = torch.nn.Linear(*state["out.weight"].shape[::-1])
model.load_state_dict(state)

def idx(path):
    raw = gzip.open(path).read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw[4 + 4 * nd:], dtype=np.uint8).reshape(dims)

x = torch.tensor(idx(f"{root}/mnist/t10k-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0, dtype=torch.float32)
y = torch.tensor(idx(f"{root}/mnist/t10k-labels-idx1-ubyte.gz").astype(np.int64))
with torch.no_grad():
    h = torch.relu(model.h1(x))
    h = torch.relu(model.h2(h))
    acc = (model.out(h).argmax(1) == y).float().mean().item()
print(json.dumps({"pytorch_test_accuracy": acc}))
