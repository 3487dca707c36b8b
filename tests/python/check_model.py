"""The PyTorch module of shapelab_torch.py gives shapelab's logits (opt-in test).

usage: python3 check_model.py RUN_DIR DATASET.npz LOGITS.npz
"""
import sys

import numpy as np
import torch

from shapelab_torch import load

run_dir, data, logits = sys.argv[1:4]
net, meta = load(run_dir)
x = torch.from_numpy(np.load(data)["x_val"]).float().unsqueeze(1)
if meta["train"]["scaling"] == "unit":
    x = x / 255
with torch.no_grad():
    ours = net(x).numpy()
theirs = np.load(logits)["logits"]
err = np.abs(ours - theirs).max() / np.abs(theirs).max()
assert err < 1e-5, f"PyTorch and shapelab logits differ by {err:e}"
assert (ours.argmax(1) == theirs.argmax(1)).all()
print("ok", err)
