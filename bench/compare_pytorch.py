"""shapelab against PyTorch in one run: the README's speed table and issue 17's ratios.

    cargo build --release
    python3 bench/compare_pytorch.py [--rounds 5] [--threads 2] [--shapelab target/release/shapelab]

Alternates `shapelab bench train --json` and `bench/pytorch_train.py --json` (same data, batch
32, Adam, best of 3 epochs each) for `--rounds` rounds, swapping which goes first every other
round, because a shared host's speed drifts by a third within minutes. Prints the CPU, each
round's readings, and the medians with their ratio per network at `--threads` threads.
Needs torch and numpy; not run by CI.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def shapelab_round(exe, archs, threads, env):
    r = subprocess.run([exe, "bench", "train", "--arch", archs, "--threads", str(threads),
                        "--json", "-q"], check=True, capture_output=True, text=True, env=env)
    data = json.loads(r.stdout)
    return {c["arch"]: (c["train_images_per_s"], c["infer_images_per_s"])
            for c in data["configs"] if c["threads"] == threads}


def pytorch_round(data, archs, threads):
    d = run_json([sys.executable, os.path.join(HERE, "pytorch_train.py"), data, "--arch", archs,
                  "--threads", str(threads), "--json"])
    return d["torch"], {c["arch"]: (c["train_images_per_s"], c["infer_images_per_s"])
                        for c in d["configs"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapelab", default=os.path.join(HERE, "..", "target", "release", "shapelab"))
    ap.add_argument("--data", default="/tmp/shapelab-bench.npz")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", default="2-4,16-4,16-16,32-32")
    ap.add_argument("--portable", action="store_true",
                    help="run shapelab with TINYCNN_PORTABLE=1 (no AVX-512 kernels)")
    a = ap.parse_args()
    if not os.path.exists(a.data):
        subprocess.run([a.shapelab, "generate", "--preset", "thesis-1.3", "--train", "2000",
                        "--val", "1000", "--out", a.data], check=True, capture_output=True)
    env = dict(os.environ)
    if a.portable:
        env["TINYCNN_PORTABLE"] = "1"
    archs = a.arch.split(",")
    ours = {x: [] for x in archs}
    theirs = {x: [] for x in archs}
    version = "?"
    print(f"{cpu_model()}, {os.cpu_count()} logical CPUs, {a.threads} threads each"
          f"{', TINYCNN_PORTABLE=1' if a.portable else ''}")
    for r in range(a.rounds):
        order = ["shapelab", "torch"] if r % 2 == 0 else ["torch", "shapelab"]
        for who in order:
            if who == "shapelab":
                got = shapelab_round(a.shapelab, a.arch, a.threads, env)
                for x in archs:
                    ours[x].append(got[x])
            else:
                version, got = pytorch_round(a.data, a.arch, a.threads)
                for x in archs:
                    theirs[x].append(got[x])
        line = "  ".join(f"{x} {ours[x][-1][0]:.0f}/{theirs[x][-1][0]:.0f}" for x in archs)
        print(f"round {r + 1} ({' first, '.join(order)} second): train img/s shapelab/torch  {line}",
              flush=True)
    print(f"\nmedians of {a.rounds} rounds, PyTorch {version}:\n")
    print("| network | shapelab train | PyTorch train | ratio | shapelab infer | PyTorch infer | ratio |")
    print("|---|---|---|---|---|---|---|")
    for x in archs:
        st = statistics.median(v[0] for v in ours[x])
        pt = statistics.median(v[0] for v in theirs[x])
        si = statistics.median(v[1] for v in ours[x])
        pi = statistics.median(v[1] for v in theirs[x])
        print(f"| {x} | {st:,.0f} | {pt:,.0f} | {st / pt:.1f}x | {si:,.0f} | {pi:,.0f} | {si / pi:.1f}x |")


if __name__ == "__main__":
    main()
