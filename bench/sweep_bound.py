"""How far a finished sweep ran from the machine's limit: its training work (the dense
products' multiply-adds) against the fp32 multiply-add peak.

    cargo build --release
    python3 bench/sweep_bound.py thesis/shapelab.db [--experiment study-thesis] [--jobs 2]

Reads every run of the experiment from the store (architecture, dataset, epochs run, seconds),
and asks `shapelab bench train --json` for each architecture's training work per image (the
products' multiply-adds, forward and backward, as `bench train` counts them) and for the
measured peak of one core. A run's work is `epochs run x training images x work per image`;
validation and test passes are left out. Same results means the same epochs, images and
sums, but not the same multiply-adds: the engine leaves out terms that are exact zeros (the
sparse weight gradient, the products of silent layers) with the same bits. So the work is the
dense count, an upper bound on what the kernels multiply, and `of peak` is an effective rate
against it (above 100% is possible); `work / (peak x jobs)` is the wall time the dense
products would take at the peak with `--jobs` single-thread jobs, not a floor.
Needs only the standard library; not run by CI.
"""
import argparse
import json
import os
import sqlite3
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def work_per_image(exe, archs):
    """MFLOP per training image of each architecture, and one core's peak in GFLOP/s."""
    out = subprocess.run([exe, "bench", "train", "--arch", ",".join(archs), "--threads", "1",
                          "--images", "400", "--epochs", "1", "--json", "-q"],
                         check=True, capture_output=True, text=True).stdout
    data = json.loads(out)
    mflop = {c["arch"]: c["train_gflops"] / c["train_images_per_s"] * 1e3
             for c in data["configs"]}
    peak = next(p["gflops"] for p in data["fma_peak_gflops"] if p["threads"] == 1)
    return mflop, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("--experiment", default=None, help="default: the store's largest")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--shapelab", default=os.path.join(HERE, "..", "target", "release",
                                                         "shapelab"))
    a = ap.parse_args()
    if not os.path.isfile(a.store):
        raise SystemExit(f"error: no store at {a.store}: give a study's shapelab.db")
    if not os.path.isfile(a.shapelab):
        raise SystemExit(f"error: no shapelab binary at {a.shapelab}: run `cargo build --release`"
                         " or pass --shapelab")
    try:
        db = sqlite3.connect(f"file:{a.store}?mode=ro", uri=True)
        top = db.execute("select experiment from runs group by experiment "
                         "order by count(*) desc").fetchone()
        exp = a.experiment or (top[0] if top else "")
        train = dict(db.execute("select label, train from datasets"))
        runs = db.execute("select arch, dataset, condition, epochs_run, seconds from runs "
                          "where experiment = ?", (exp,)).fetchall()
    except sqlite3.DatabaseError as e:
        raise SystemExit(f"error: {a.store} is not a readable shapelab store ({e})")
    if not runs:
        raise SystemExit(f"no runs of experiment {exp!r} in {a.store}")
    mflop, peak = work_per_image(a.shapelab, sorted({r[0] for r in runs}))
    per = {}
    for arch, ds, cond, epochs, seconds in runs:
        w = per.setdefault(cond, [0, 0.0, 0.0])
        w[0] += 1
        w[1] += epochs * train[ds] * mflop[arch] * 1e6
        w[2] += seconds
    print(f"experiment {exp}: {len(runs)} runs; one core's fp32 FMA peak {peak:.1f} GFLOP/s")
    print("condition | runs | training work | run-minutes at peak | run-minutes measured | of peak")
    total = [0, 0.0, 0.0]
    for cond, (n, flop, secs) in sorted(per.items()):
        print(f"{cond} | {n} | {flop / 1e15:.3f} PFLOP | {flop / peak / 1e9 / 60:.1f} | "
              f"{secs / 60:.1f} | {flop / peak / 1e9 / secs:.0%}")
        total = [total[0] + n, total[1] + flop, total[2] + secs]
    n, flop, secs = total
    print(f"all | {n} | {flop / 1e15:.3f} PFLOP | {flop / peak / 1e9 / 60:.1f} | "
          f"{secs / 60:.1f} | {flop / peak / 1e9 / secs:.0%}")
    print(f"the dense products at the peak with {a.jobs} single-thread jobs: "
          f"{flop / peak / 1e9 / a.jobs / 60:.1f} min (measured: {secs / a.jobs / 60:.1f} "
          f"run-minutes per job)")


if __name__ == "__main__":
    main()
