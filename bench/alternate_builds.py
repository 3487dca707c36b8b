"""Two or more shapelab builds (or settings) against each other, alternated: how each change's
speed-up in the README was measured.

    python3 bench/alternate_builds.py ROUNDS ARCHS LABEL=ENV:BINARY ...
    python3 bench/alternate_builds.py 10 2-4,16-16 before=:/tmp/old/shapelab after=:target/release/shapelab
    python3 bench/alternate_builds.py 4 16-16 avx512=TINYCNN_ISA/avx512:target/release/shapelab avx2=TINYCNN_ISA/avx2:target/release/shapelab

Each round runs `BINARY bench train --arch ARCHS --json -q` once per build, reversing the
order every other round, because a shared host's speed drifts by a third within minutes.
`ENV` is `NAME/VALUE` pairs separated by commas (or empty). Prints, per network and thread
count (and "2x1": two single-thread runs at once, how a sweep uses two cores), each build's
median training images/s and its ratio to the first build. Not run by CI.
"""
import json
import os
import statistics
import subprocess
import sys


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    rounds, archs = int(sys.argv[1]), sys.argv[2]
    builds = []
    for spec in sys.argv[3:]:
        label, rest = spec.split("=", 1)
        envs, exe = rest.split(":", 1)
        env = dict(os.environ)
        for pair in filter(None, envs.split(",")):
            k, v = pair.split("/", 1)
            env[k] = v
        builds.append((label, exe, env))
    res = {}
    for r in range(rounds):
        for label, exe, env in builds if r % 2 == 0 else builds[::-1]:
            out = subprocess.run([exe, "bench", "train", "--arch", archs, "--json", "-q"],
                                 capture_output=True, text=True, env=env, check=True).stdout
            d = json.loads(out)
            for c in d["configs"]:
                res.setdefault((c["arch"], c["threads"]), {}).setdefault(label, []).append(
                    c["train_images_per_s"])
            for c in d["parallel_runs"]:
                res.setdefault((c["arch"], "2x1"), {}).setdefault(label, []).append(
                    c["train_images_per_s"])
        print(f"round {r + 1} of {rounds} done", file=sys.stderr, flush=True)
    labels = [b[0] for b in builds]
    print("network threads " + " ".join(labels) + " " + " ".join(f"{l}/{labels[0]}" for l in labels[1:]))
    for (arch, threads), v in res.items():
        meds = [statistics.median(v[l]) for l in labels]
        print(f"{arch} {threads} " + " ".join(f"{m:,.0f}" for m in meds) + " "
              + " ".join(f"{m / meds[0]:.3f}" for m in meds[1:]))


if __name__ == "__main__":
    main()
