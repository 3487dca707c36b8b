#!/usr/bin/env bash
# shapelab's main job on its embedded default, from a fresh clone: build, then generate the
# thesis's datasets (1.2, 1.3, 2.1) and its two image panels, and inspect each one, which
# prints its summary and writes its contact sheet; then train one network of the thesis's
# case studies on each of 1.3 and 2.1 and evaluate it. Outputs go to ./quickstart (or $1).
# (Until `shapelab study` exists, this is the whole pipeline there is.)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-quickstart}

cargo build --release --locked
bin=target/release/shapelab

for preset in thesis-1.2 thesis-1.3 thesis-2.1; do
  "$bin" generate --preset "$preset" --out "$out/$preset.npz" --force
  "$bin" inspect "$out/$preset.npz"
done
for panel in thesis-size thesis-rotation; do
  "$bin" generate --panel "$panel" --out "$out/panel-$panel.npz" --force
  "$bin" inspect "$out/panel-$panel.npz"
done
"$bin" train --data "$out/thesis-1.3.npz" --arch 16-4 --epochs 10 --seed 1 --out "$out/runs/16-4-size" --force
"$bin" eval "$out/runs/16-4-size"
"$bin" train --data "$out/thesis-2.1.npz" --arch 8-4 --epochs 10 --seed 1 --out "$out/runs/8-4-rotation" --force
"$bin" eval "$out/runs/8-4-rotation"
echo
echo "done: datasets, panels, contact sheets (*.contact.png) and two trained models are in $out/"
