"""Hand-written PyTorch: the seed MLP on bench/data/mnist_synth.npz, a seeded 90/10 split, tensors sliced by a
randperm each epoch (torch's default threads), then the validation metrics. The whole-process baseline of
bench/bench_process.py.

    python bench/hand/torch_loop.py [--epochs 5]"""

import argparse
import os
import time

import numpy as np
import torch
from torch import nn

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=5)
ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "mnist_synth.npz"))
args = ap.parse_args()
with np.load(args.data) as f:
    x, y = torch.from_numpy(f["x"]), torch.from_numpy(f["y"]).long()
torch.manual_seed(42)
perm = torch.randperm(len(x))
n_val = len(x) // 10
xv, yv, xt, yt = x[perm[:n_val]], y[perm[:n_val]], x[perm[n_val:]], y[perm[n_val:]]
model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.3), nn.Linear(512, 10))
opt = torch.optim.RMSprop(model.parameters(), lr=0.001, alpha=0.9, eps=1e-7)
loss_fn = nn.CrossEntropyLoss()
t = time.perf_counter()
for _epoch in range(args.epochs):
    model.train()
    order = torch.randperm(len(xt))
    total = torch.zeros(())
    for i in range(0, len(xt), 128):
        idx = order[i:i + 128]
        loss = loss_fn(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.detach() * len(idx)
    model.eval()
    with torch.no_grad():
        out = model(xv)
        val = (loss_fn(out, yv).item(), (out.argmax(1) == yv).float().mean().item())
print(f"train {time.perf_counter() - t:.2f} s", float(total) / len(xt), val)
