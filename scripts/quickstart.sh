#!/usr/bin/env bash
# shapelab's main job on its embedded default, from a fresh clone: build, then run the default
# study (`shapelab study`): the thesis's size and rotation datasets, the sweep of its filter grid
# under modern and sticking conditions, the stuck runs trained further, the four case studies
# analysed in full, and the report. About 2 minutes after the build on 2 cores. Outputs go to
# ./study (or $1); rerunning resumes and reuses what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-study}

cargo build --release --locked
target/release/shapelab study --out "$out"
