"""Loads a shapelab model directory into the equivalent PyTorch module.

This is the snippet the README shows; tests/python/check_model.py runs it against
`shapelab predict --data ... --out logits.npz` (opt-in test, SHAPELAB_PYTHON_TESTS=1).
"""
import json

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


class ShapelabNet(torch.nn.Module):
    def __init__(self, arch):
        super().__init__()
        self.arch, cin, h, w = arch, 1, arch["height"], arch["width"]
        for i, (f, pool) in enumerate(zip(arch["filters"], arch["pool"])):
            setattr(self, f"conv{i + 1}", torch.nn.Conv2d(cin, f, arch["kernel"], padding=arch["kernel"] // 2))
            cin, h, w = f, (h // 2 if pool else h), (w // 2 if pool else w)
        self.fc = torch.nn.Linear(cin * h * w, arch["classes"])

    def forward(self, x):  # x: (N, 1, H, W) float, scaled as the model was trained
        act = {"relu": F.relu, "tanh": torch.tanh, "leaky-relu": lambda t: F.leaky_relu(t, 0.01)}
        for i, pool in enumerate(self.arch["pool"]):
            x = act[self.arch["activation"]](getattr(self, f"conv{i + 1}")(x))
            x = F.max_pool2d(x, 2) if pool else x
        return self.fc(x.flatten(1))


def load(run_dir):
    meta = json.load(open(f"{run_dir}/model.json"))
    net = ShapelabNet(meta["arch"])
    net.load_state_dict(load_file(f"{run_dir}/model.safetensors"))
    return net.eval(), meta
