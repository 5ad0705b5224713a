#!/usr/bin/env python3
"""Load a LeNet checkpoint written by `cargo run --release --example train_mnist` into
PyTorch's equivalent nn.Sequential (strict: every name and shape must match), check its
held-out accuracy on the same 1,000 digits, and save it back for ferroconv to load.

Usage: python3 scripts/check_torch_load.py [target/mnist/lenet.safetensors] [data/mnist_5k.csv.gz]
Needs: pip install torch safetensors numpy
"""
import gzip, sys
import numpy as np, torch, torch.nn as nn
from safetensors.torch import load_file, save_file

ckpt = sys.argv[1] if len(sys.argv) > 1 else "target/mnist/lenet.safetensors"
data = sys.argv[2] if len(sys.argv) > 2 else "data/mnist_5k.csv.gz"
m = nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.ReLU(),
                  nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
m.load_state_dict(load_file(ckpt), strict=True)
a = np.loadtxt(gzip.open(data), delimiter=",", dtype=np.float32)
x = torch.from_numpy(a[:, :784].reshape(-1, 1, 28, 28) / 255.0)
y = torch.from_numpy(a[:, 784].astype(np.int64))
with torch.no_grad():
    acc = (m(x).argmax(1) == y).float().mean().item()
print(f"loaded {ckpt} into torch {torch.__version__} (strict); accuracy on all 5,000 digits {acc*100:.2f}%")
out = ckpt.replace(".safetensors", ".from_torch.safetensors")
save_file({k: v.contiguous() for k, v in m.state_dict().items()}, out)
print(f"saved back to {out}")
