"""How much of a finished sweep's training went to frozen epochs: epochs after one in which
the run's last conv layer was dead throughout (every filter, every training image) and every
weight gradient was zero, so that only the dense biases could still move
(`crates/tinycnn/src/frozen.rs` computes such epochs from the dense layer alone).

    python3 bench/frozen_share.py thesis/shapelab.db [--experiment study-thesis]

Reads each run's per-epoch dead-filter counts and gradient norms from the store. A run's
time is spread evenly over its epochs, so the share is an estimate: an epoch with a dead last
layer already costs less than a live one (the silent layers' products are skipped). The
store's records say whether the last layer was dead and the weight gradients zero, not the
whole proof (bit-exact +0 outputs, unchanged velocities), so a run counted here may be proved
frozen an epoch later. Needs only the standard library; not run by CI.
"""
import argparse
import json
import os
import sqlite3
from collections import defaultdict


def frozen_from(epochs, filters):
    """The first epoch (1-based) whose last layer was dead and weight gradients zero."""
    for epoch, dead, grad_norms in epochs:
        dead = json.loads(dead)
        norms = json.loads(grad_norms) if grad_norms else None
        if dead[-1] == filters[-1] and norms is not None and all(g == 0 for g in norms):
            return epoch
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", help="a sweep's or study's shapelab.db")
    ap.add_argument("--experiment", default="study-thesis")
    args = ap.parse_args()
    if not os.path.isfile(args.store):
        raise SystemExit(f"{args.store}: no such store; pass the shapelab.db of a finished sweep or study")
    db = sqlite3.connect(f"file:{args.store}?mode=ro", uri=True)
    runs = db.execute(
        "select key, condition, epochs_run, seconds, config from runs where experiment = ?",
        (args.experiment,),
    ).fetchall()
    if not runs:
        raise SystemExit(f"{args.store}: no runs of experiment {args.experiment!r}; pass --experiment")
    total = defaultdict(float)
    frozen = defaultdict(float)
    count = defaultdict(lambda: [0, 0])
    for key, condition, epochs_run, seconds, config in runs:
        filters = json.loads(config)["arch"]["filters"]
        epochs = db.execute(
            "select epoch, dead, grad_norms from epochs where run_key = ? order by epoch", (key,)
        ).fetchall()
        total[condition] += seconds
        count[condition][1] += 1
        first = frozen_from(epochs, filters)
        if first is not None and epochs_run > 0:
            frozen[condition] += seconds * (epochs_run - first) / epochs_run
            count[condition][0] += 1
    print(f"{'condition':<12} {'runs frozen':>12} {'run-min':>9} {'in frozen epochs':>17}")
    for c in sorted(total):
        print(f"{c:<12} {count[c][0]:>5} of {count[c][1]:<5} {total[c] / 60:>9.1f} "
              f"{frozen[c] / 60:>10.1f} ({frozen[c] / total[c]:.0%})")
    t, f = sum(total.values()), sum(frozen.values())
    print(f"{'all':<12} {sum(k for k, _ in count.values()):>5} of {len(runs):<5} "
          f"{t / 60:>9.1f} {f / 60:>10.1f} ({f / t:.0%})")


if __name__ == "__main__":
    main()
