"""Expert PyTorch baseline for `shapelab prune` / `shapelab bench prune`; not run by CI.

The issue's fastest PyTorch version ("an expert PyTorch version with batched masks"): greedy
pruning without retraining, one filter per step, where each step evaluates every candidate
removal of a layer in one batched forward pass (masks over the channels, candidates stacked
along the batch) on the same trained shapelab model and validation images:

    cargo run --release -- generate --preset thesis-1.3 --train 6000 --val 1000 --out /tmp/p.npz
    cargo run --release -- train --data /tmp/p.npz --arch 16-16 --epochs 5 --out /tmp/prun
    cargo run --release -- prune /tmp/prun --data /tmp/p.npz --ties one --json  # "seconds"
    python3 bench/pytorch_prune.py /tmp/prun /tmp/p.npz [--threads 2] [--repeats 3] [--json]

Ties go to the lowest layer, then the lowest filter, as in shapelab; the search stops when
every layer has one filter. Reports the best time over the repeats, the steps and evaluations,
and the removal order (which should match shapelab's table up to near ties, where float32
rounding in another library may differ). Needs torch, numpy and safetensors.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from shapelab_torch import load  # noqa: E402


def greedy(net, x, y, chunk):
    """Greedy pruning of a two-conv-layer ReLU/max-pool network; returns (steps, evaluations)."""
    conv1, conv2, fc = net.conv1, net.conv2, net.fc
    f1, f2 = conv1.out_channels, conv2.out_channels
    keep = [torch.ones(f1, dtype=torch.bool), torch.ones(f2, dtype=torch.bool)]
    steps, evaluations = [], 0
    with torch.no_grad():
        h1 = F.max_pool2d(F.relu(conv1(x)), 2)  # never changes: nothing upstream is removed
        while keep[0].sum() > 1 or keep[1].sum() > 1:
            k1, k2 = keep[0].float(), keep[1].float()
            results = []  # (accuracy, layer, filter)
            if keep[0].sum() > 1:
                cands = keep[0].nonzero().flatten()
                masks = k1.repeat(len(cands), 1)
                masks[torch.arange(len(cands)), cands] = 0
                correct = torch.zeros(len(cands))
                for a in range(0, len(x), chunk):
                    hb = h1[a:a + chunk]
                    hm = (hb.unsqueeze(0) * masks[:, None, :, None, None]).flatten(0, 1)
                    h2 = F.max_pool2d(F.relu(conv2(hm)), 2) * k2[None, :, None, None]
                    logits = fc(h2.flatten(1)).view(len(cands), len(hb), -1)
                    correct += (logits.argmax(-1) == y[a:a + chunk]).sum(1)
                results += [(c.item() / len(x), 0, f.item()) for c, f in zip(correct, cands)]
            if keep[1].sum() > 1:
                cands = keep[1].nonzero().flatten()
                masks = k2.repeat(len(cands), 1)
                masks[torch.arange(len(cands)), cands] = 0
                h2 = F.max_pool2d(F.relu(conv2(h1 * k1[None, :, None, None])), 2)
                hm = (h2.unsqueeze(0) * masks[:, None, :, None, None]).flatten(0, 1)
                logits = fc(hm.flatten(1)).view(len(cands), len(x), -1)
                correct = (logits.argmax(-1) == y).sum(1)
                results += [(c.item() / len(x), 1, f.item()) for c, f in zip(correct, cands)]
            evaluations += len(results)
            best = max(results, key=lambda r: (r[0], -r[1], -r[2]))
            keep[best[1]][best[2]] = False
            steps.append({"layer": best[1] + 1, "filter": best[2] + 1, "accuracy": best[0]})
    return steps, evaluations


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=50, help="images per batched forward (50: fastest here)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    net, meta = load(a.run)
    d = np.load(a.data)
    x = torch.from_numpy(d["x_val"]).float().unsqueeze(1)
    if meta["train"]["scaling"] == "unit":
        x = x / 255.0
    y = torch.from_numpy(d["y_val"]).long()
    best = float("inf")
    for _ in range(a.repeats):
        t = time.perf_counter()
        steps, evaluations = greedy(net, x, y, a.chunk)
        best = min(best, time.perf_counter() - t)
    r = {
        "images": len(x),
        "threads": a.threads,
        "steps": len(steps),
        "evaluations": evaluations,
        "seconds": best,
        "removed": steps,
    }
    if a.json:
        print(json.dumps(r))
    else:
        order = " ".join(f"L{s['layer']}F{s['filter']}" for s in steps)
        print(f"PyTorch {torch.__version__}, batched masks: {len(steps)} steps, {evaluations} "
              f"evaluations on {len(x)} images in {best:.3f} s ({a.threads} threads)\n{order}")


if __name__ == "__main__":
    main()
