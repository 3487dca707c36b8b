"""Opens shapelab's files the way Python users do; run by the opt-in test
`python_users_open_the_files` (SHAPELAB_PYTHON_TESTS=1), never by CI.

usage: python3 check_files.py DATASET.npz TREE_DIR PANEL.npz
Needs numpy and Pillow; uses torchvision's ImageFolder when it is installed.
"""
import json
import sys

import numpy as np
from PIL import Image

npz, tree, panel = sys.argv[1:4]
d = np.load(npz)  # no allow_pickle: everything is a plain array
assert d["x_train"].dtype == np.uint8 and d["x_train"].ndim == 3, d["x_train"].shape
assert d["y_train"].dtype == np.uint8 and d["y_train"].shape == (len(d["x_train"]),)
assert d["factors_train"].dtype == np.float32
assert d["factors_train"].shape == (len(d["x_train"]), len(d["factor_names"]))
assert list(d["class_names"]) == ["ellipse", "rectangle", "triangle"]
meta = json.loads(str(d["spec"]))
assert meta["format"] == "shapelab-dataset" and len(meta["hash"]) == 64
size = list(d["factor_names"]).index("size")
assert d["factors_train"][:, size].min() > 0

# The ImageFolder tree holds the same pixels as the npz, row i as file i+1.
import csv

rows = list(csv.DictReader(open(f"{tree}/factors.csv")))
first = rows[0]
img = np.asarray(Image.open(f"{tree}/{first['file']}"))
assert Image.open(f"{tree}/{first['file']}").mode == "L"
assert (img == d["x_train"][0]).all()
try:
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(f"{tree}/train")
    assert ds.classes == ["ellipse", "rectangle", "triangle"]
    assert len(ds) == len(d["x_train"])
except ImportError:
    pass

p = np.load(panel)
assert p["x_panel"].shape[0] == len(p["panel_captions"]) == len(p["y_panel"])
print("ok")
