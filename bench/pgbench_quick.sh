#!/usr/bin/env bash
# A first data point: pgbench select-only through shardgate vs directly against the same
# Postgres, alternating targets so machine noise hits both alike.
#
#   bench/pgbench_quick.sh [clients=8] [seconds=10] [rounds=3] [mode=prepared]
#
# Starts `shardgate demo --shards 1` (release build) on a spare port, initialises pgbench
# tables through the proxy, then runs `pgbench -S -M <mode>` against the shard's own port and
# the proxy's port in turn. Prints one line per run and the median TPS of each target.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-8}; seconds=${2:-10}; rounds=${3:-3}; mode=${4:-prepared}
port=${SHARDGATE_BENCH_PORT:-6599}
bindir=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
cargo build --release --quiet
work=$(mktemp -d /tmp/sg-bench-XXXX); chmod 755 "$work"  # the postgres user must reach it
( cd "$work" && exec "$OLDPWD/target/release/shardgate" demo --shards 1 --port "$port" >demo.log 2>&1 ) &
demo=$!
trap 'kill -INT $demo 2>/dev/null; wait $demo 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q "Press Ctrl-C" "$work/demo.log" 2>/dev/null && break; sleep 0.2; done
shard_port=$(sed -n 4p "$work"/.shardgate/demo/s0/postmaster.pid)
export PGPASSWORD=demo
"$bindir/pgbench" -q -i -s 10 -h 127.0.0.1 -p "$port" -U demo demo >/dev/null 2>&1
run() { # target-name port
  "$bindir/pgbench" -n -S -M "$mode" -c "$clients" -j 2 -T "$seconds" -h 127.0.0.1 -p "$2" -U demo demo 2>&1 |
    awk -v t="$1" '/^tps/ {tps=$3} /^latency average/ {lat=$4} /failed transactions/ {f=$5} END {printf "%-10s tps %10.0f  latency %6s ms  failed %s\n", t, tps, lat, f}'
}
echo "pgbench -S -M $mode, $clients clients, ${seconds}s x $rounds rounds, $(nproc) cores"
for r in $(seq "$rounds"); do
  run direct "$shard_port" | tee -a "$work/direct"
  run shardgate "$port" | tee -a "$work/proxy"
done
med() { awk '{print $3}' "$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
d=$(med "$work/direct"); p=$(med "$work/proxy")
echo "median tps: direct $d, shardgate $p, ratio $(awk -v p="$p" -v d="$d" 'BEGIN {printf "%.2f", p/d}')"
