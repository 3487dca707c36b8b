#!/usr/bin/env bash
# Opt-in test (not in CI: it installs and starts a scheduler): a sweep's emitted Slurm job
# array run by a real single-node Slurm into the throwaway PostgreSQL, one task requeued with
# `scontrol requeue` and one cancelled with `scancel` while they run, then the store compared
# with the same sweep run by one process into SQLite: every run once, same keys, outcomes,
# metrics and model hashes.
#   bash scripts/slurm-test.sh
# Installs Debian's slurm-wlm and munge when absent (root or sudo), configures Slurm on this
# host from files in a temporary directory, and stops everything at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ "$(id -u)" != 0 ]; then echo "error: run as root (Slurm's daemons and munge need it here)" >&2; exit 1; fi
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  echo "installing Debian's slurm-wlm and munge" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
cargo build --release --locked -q
bin=$root/target/release/shapelab

source scripts/throwaway-postgres.sh
work=$(mktemp -d /tmp/shapelab-slurm.XXXXXX)
host=$(hostname -s)
cleanup() {
  [ -f "$work/slurmd.pid" ] && kill "$(cat "$work/slurmd.pid")" 2>/dev/null || true
  [ -f "$work/slurmctld.pid" ] && kill "$(cat "$work/slurmctld.pid")" 2>/dev/null || true
  [ -f "$work/munged.pid" ] && kill "$(cat "$work/munged.pid")" 2>/dev/null || true
  sleep 1
  stop_throwaway_postgres
  rm -rf "$work"
}
trap cleanup EXIT

# munge: a fresh key and a daemon of our own, its socket in the work directory.
mkdir -p "$work/munge"
dd if=/dev/urandom bs=1 count=1024 of="$work/munge/munge.key" status=none
chmod 700 "$work/munge"; chmod 400 "$work/munge/munge.key"
munged --key-file="$work/munge/munge.key" --socket="$work/munge/socket" \
  --pid-file="$work/munged.pid" --log-file="$work/munge/log" --seed-file="$work/munge/seed" --force
export SLURM_CONF=$work/slurm.conf
cat > "$SLURM_CONF" <<CONF
ClusterName=shapelab-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
SlurmctldPort=$(( 30000 + RANDOM % 5000 ))
SlurmdPort=$(( 35000 + RANDOM % 5000 ))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobRequeue=1
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p "$work/state" "$work/spool"
slurmctld
slurmd
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
sinfo

# The sweep: 16 runs of about a second each, once by one process into SQLite, once by 4 Slurm
# workers (two at a time on two cores) into PostgreSQL.
cd "$work"
cat > exp.toml <<EXP
name = "slurm"
seed = 7
seeds = 4
epochs = 4
[[dataset]]
preset = "thesis-1.3"
train = 6000
val = 300
test = 300
[grid]
archs = ["8-8", "16-16"]
[sweep]
optimizer = ["adam", "sgd"]
scaling = ["raw"]
EXP
"$bin" sweep exp.toml --store one.db --quiet
"$bin" runs --store one.db --json > one.json
"$SHAPELAB_PG_BIN/psql" -q "$SHAPELAB_TEST_PG" -c "CREATE DATABASE slurm"
export SHAPELAB_STORE=${SHAPELAB_TEST_PG/\/postgres\?/\/slurm?}
export SHAPELAB_ARTIFACTS=$work/artifacts
"$bin" sweep exp.toml --emit slurm --array 4 --jobs 1 --lease 5 > sweep.sbatch
job=$(sbatch --parsable sweep.sbatch)
echo "submitted job array $job"
# Wait until tasks run, then requeue one and cancel another mid-run.
for _ in $(seq 120); do [ "$(squeue -h -j "$job" -t R | wc -l)" -ge 2 ] && break; sleep 0.5; done
sleep 2
squeue -j "$job"
# Requeue a running task (Slurm kills it and runs it again later) and cancel a running one.
running=($(squeue -h -j "$job" -t R -o %i))
scontrol requeue "${running[0]}" && echo "requeued ${running[0]} while it ran"
scancel "${running[1]}" && echo "cancelled ${running[1]} while it ran"
for _ in $(seq 600); do [ -z "$(squeue -h -j "$job")" ] && break; sleep 1; done
if [ -n "$(squeue -h -j "$job")" ]; then echo "error: the job array did not finish" >&2; squeue; exit 1; fi
echo "what each task printed:"
cat "$work"/shapelab-slurm-*.out
"$bin" runs --store "$SHAPELAB_STORE" --json > pg.json
python3 - <<'PY'
import json
def load(p):
    runs = json.load(open(p))
    keys = [r["key"] for r in runs]
    assert len(keys) == len(set(keys)), f"{p}: a key twice"
    return {r["key"]: (r["outcome"], r["epochs_run"], r["val_acc"], r["val_loss"], r["test_acc"], r["weights_sha256"]) for r in runs}
one, pg = load("one.json"), load("pg.json")
assert len(one) == 16, len(one)
assert pg == one, {k: (one.get(k), pg.get(k)) for k in set(one) | set(pg) if one.get(k) != pg.get(k)}
print(f"slurm test passed: {len(pg)} runs stored once each, equal to one process into SQLite (keys, outcomes, metrics, model hashes)")
PY
"$SHAPELAB_PG_BIN/psql" -q "$SHAPELAB_STORE" -c "SELECT count(*) AS runs, count(DISTINCT key) AS keys, max(attempts) AS most_claims_of_one_run FROM runs JOIN claims USING (key)"
