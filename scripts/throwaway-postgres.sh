#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, sourced by scripts/test.sh:
#   source scripts/throwaway-postgres.sh   (then SHAPELAB_TEST_PG names it; stopped on exit)
# It installs Debian's `postgresql` when absent, makes a cluster with initdb in a temporary
# directory, and starts it with pg_ctl listening only on a Unix socket in that directory (no
# TCP port, no system service). Two roles: `postgres` (trusted on the socket, for the tests'
# set-up) and `shapelab_pw`, whose password is drawn at random into an environment variable,
# never into a file. Everything is removed when the shell that sourced this exits.

pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; fi
}

if [ -z "$(pg_bindir)" ]; then
  echo "installing Debian's postgresql for the store tests" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "error: postgresql is not installed and neither root nor sudo is available; install the 'postgresql' package" >&2
    exit 1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  # Debian's package starts a system cluster; the tests use their own.
  $sudo pg_ctlcluster --help >/dev/null 2>&1 && { $sudo service postgresql stop >/dev/null 2>&1 || true; }
fi
SHAPELAB_PG_BIN=$(pg_bindir)
export SHAPELAB_PG_BIN

SHAPELAB_PG_DIR=$(mktemp -d /tmp/shapelab-pg.XXXXXX)
# PostgreSQL refuses to run as root: as root, the server runs as the package's `postgres` user.
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$SHAPELAB_PG_DIR"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi
SHAPELAB_PG_PORT=$(( 20000 + RANDOM % 20000 ))
as_pg "$SHAPELAB_PG_BIN/initdb" -D "$SHAPELAB_PG_DIR/data" -U postgres -A trust --no-sync >/dev/null
cat > "$SHAPELAB_PG_DIR/data/pg_hba.conf" <<HBA
local all postgres trust
local all all scram-sha-256
HBA
as_pg "$SHAPELAB_PG_BIN/pg_ctl" -D "$SHAPELAB_PG_DIR/data" -l "$SHAPELAB_PG_DIR/log" -w -s \
  -o "-c listen_addresses='' -c unix_socket_directories='$SHAPELAB_PG_DIR' -p $SHAPELAB_PG_PORT -c fsync=off -c max_connections=200" start

stop_throwaway_postgres() {
  as_pg "$SHAPELAB_PG_BIN/pg_ctl" -D "$SHAPELAB_PG_DIR/data" -m immediate -s stop >/dev/null 2>&1 || true
  rm -rf "$SHAPELAB_PG_DIR"
}
trap stop_throwaway_postgres EXIT

SHAPELAB_TEST_PG_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
export SHAPELAB_TEST_PG_PASSWORD
# The password goes to psql on its standard input, not on a command line or into a file.
printf "CREATE ROLE shapelab_pw LOGIN PASSWORD '%s' CREATEDB;\n" "$SHAPELAB_TEST_PG_PASSWORD" |
  "$SHAPELAB_PG_BIN/psql" -q -h "$SHAPELAB_PG_DIR" -p "$SHAPELAB_PG_PORT" -U postgres -d postgres >/dev/null
# The admin URL; tests create a database each through it.
export SHAPELAB_TEST_PG="postgresql://postgres@localhost/postgres?host=$SHAPELAB_PG_DIR&port=$SHAPELAB_PG_PORT"
echo "throwaway PostgreSQL on $SHAPELAB_PG_DIR (port $SHAPELAB_PG_PORT)" >&2
