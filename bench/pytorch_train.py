"""PyTorch baseline for `shapelab bench train` (same data and settings); not run by CI.

    cargo run --release -- generate --preset thesis-1.3 --train 2000 --val 1000 --out /tmp/bench.npz
    python3 bench/pytorch_train.py /tmp/bench.npz [--threads 2] [--json]

Trains each architecture (two conv blocks of conv3x3 'same' + ReLU + maxpool 2x2, flatten,
dense, cross-entropy; Keras's Glorot/zero init is irrelevant to speed) with Adam (lr 1e-3,
eps 1e-7) at batch 32, reshuffling every epoch, and reports the best epoch's images/s; then
inference at batch 1000 (best of 5, no_grad) and the process's peak RSS. Needs torch and numpy.
"""
import argparse
import json
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F


class Net(torch.nn.Module):
    def __init__(self, filters, classes=3, side=28):
        super().__init__()
        cin, h = 1, side
        self.convs = torch.nn.ModuleList()
        for f in filters:
            self.convs.append(torch.nn.Conv2d(cin, f, 3, padding=1))
            cin, h = f, h // 2
        self.fc = torch.nn.Linear(cin * h * h, classes)

    def forward(self, x):
        for c in self.convs:
            x = F.max_pool2d(F.relu(c(x)), 2)
        return self.fc(x.flatten(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--arch", default="2-4,16-4,16-16,32-32")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    d = np.load(a.data)
    x = torch.from_numpy(d["x_train"]).float().div(255).unsqueeze(1)
    y = torch.from_numpy(d["y_train"]).long()
    xv = torch.from_numpy(d["x_val"][:1000]).float().div(255).unsqueeze(1)
    results = []
    for arch in a.arch.split(","):
        net = Net([int(f) for f in arch.split("-")])
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
        best = float("inf")
        for _ in range(a.epochs):
            perm = torch.randperm(len(x))
            t = time.perf_counter()
            for i in range(0, len(x), 32):
                idx = perm[i:i + 32]
                opt.zero_grad()
                F.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
            best = min(best, time.perf_counter() - t)
        with torch.no_grad():
            inf = float("inf")
            for _ in range(5):
                t = time.perf_counter()
                net(xv)
                inf = min(inf, time.perf_counter() - t)
        results.append({"arch": arch, "threads": a.threads, "train_images_per_s": len(x) / best,
                        "infer_images_per_s": len(xv) / inf})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if a.json:
        print(json.dumps({"torch": torch.__version__, "configs": results, "peak_rss_mb": rss}, indent=2))
    else:
        print(f"PyTorch {torch.__version__}, {a.threads} threads, batch 32, Adam")
        for r in results:
            print(f"  {r['arch']:>6}  train {r['train_images_per_s']:9.0f} img/s  infer {r['infer_images_per_s']:9.0f} img/s")
        print(f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
