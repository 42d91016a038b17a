#!/usr/bin/env bash
# shardgate benchmark (issue 8): direct Postgres vs PgBouncer vs shardgate, side by side.
#
#   bench/run.sh [--quick]        # quick: ~5 minutes, 1 round of 4 s per run; full: ~30 minutes,
#                                 # 3 rounds of 12 s (both at pgbench scale 5: the data fits in
#                                 # memory either way, and the overhead measured does not grow)
#   bench/run.sh --hold           # same setup, print the targets' ports, wait for Ctrl-C
#   bench/run.sh --profile DIR    # same setup, then perf profiles of the one-shard proxy under
#                                 # pgbench -S -M extended and -M simple (16 clients) into DIR
#
# Installs PgBouncer if missing (apt), builds shardgate and the helper `examples/bench_env.rs`
# (release), starts 5 throwaway Postgres servers (p0 holds every row: the "direct" target,
# PgBouncer's and the one-shard proxy's backend, and the single Postgres of the cross-shard
# comparisons; p1..p4 are the shards of the four-shard proxy), PgBouncer in transaction and in
# session mode, and two `shardgate serve` processes (one shard, four shards). It then runs
# pgbench, alternating targets inside every round so machine noise hits all alike, and writes
# bench/results/YYYY-MM-DD-<mode>.md. Latency percentiles come from pgbench's per-transaction
# logs (-l); proxy CPU from /proc/PID/stat (utime+stime) before and after each run.
# Everything it starts is stopped on exit; nothing outside its temp dir is changed except the
# results file (and the PgBouncer package, when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
mode=full
case "${1:-}" in
  --quick) mode=quick ;;
  --hold) mode=hold ;;
  --profile) mode=profile; profile_dir=$(realpath -m "${2:?--profile needs a directory}") ;;
  "") ;;
  *) echo "usage: bench/run.sh [--quick]" >&2; exit 2 ;;
esac
if [[ $mode != full ]]; then secs=4; rounds=1; scale=5; idle_n=2000
else secs=12; rounds=3; scale=5; idle_n=2000; fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# --- prerequisites ---------------------------------------------------------------------------
if [[ $mode == profile ]] && ! { command -v perf && command -v strace; } >/dev/null; then
  log "installing linux-perf and strace"; apt-get update -qq && apt-get install -y -qq linux-perf strace >/dev/null
fi
if ! command -v pgbouncer >/dev/null && [[ ! -x /usr/sbin/pgbouncer ]]; then
  log "installing pgbouncer"; apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null
fi
pgbouncer_bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
bindir=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pgbench="$bindir/pgbench"; psql="$bindir/psql"
[[ -x $pgbench ]] || pgbench=$(command -v pgbench)
[[ -x $psql ]] || psql=$(command -v psql)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
log "building (release)"
cargo build --release --quiet --bin shardgate --example bench_env
sg_bin=$CARGO_TARGET_DIR/release/shardgate
env_bin=$CARGO_TARGET_DIR/release/examples/bench_env
ulimit -n 65536 2>/dev/null || ulimit -n 8192

work=$(mktemp -d /tmp/sgb-XXXX); chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# --- Postgres servers ------------------------------------------------------------------------
log "starting 5 Postgres servers"
"$env_bin" cluster "$work/pg" 5 "$work/ports" >"$work/cluster.log" 2>&1 &
cluster_pid=$!
for _ in $(seq 600); do [[ -s $work/ports ]] && break; kill -0 $cluster_pid 2>/dev/null || break; sleep 0.2; done
[[ -s $work/ports ]] || { cat "$work/cluster.log" >&2; exit 1; }
pids=("$cluster_pid")
port() { awk -v n="$1" '$1 == n {print $2}' "$work/ports"; }
P0=$(port p0); SH=("$(port p1)" "$(port p2)" "$(port p3)" "$(port p4)")
export PGPASSWORD=app PGUSER=app PGHOST=127.0.0.1
sql() { "$psql" -X -q -A -t -v ON_ERROR_STOP=1 -p "$1" -d app -c "$2"; }

log "loading data (scale $scale)"
loaders=()
"$pgbench" -i -q -s "$scale" -p "$P0" app >"$work/init.log" 2>&1
schema="create table pgbench_accounts (aid int primary key, bid int, abalance int, filler char(84));
create table pgbench_branches (bid int primary key, bbalance int, filler char(88));
create table pgbench_tellers (tid int primary key, bid int, tbalance int, filler char(84));
create table pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));"
# Bucket of a bigint key in a 1024-bucket hash scheme, as PostgreSQL's hash partitioning
# computes it (docs/FACTS); buckets 0-255 are on shard 0, 256-511 on shard 1, ...
bucket="(((hashint8extended(aid::int8, 8816678312871386365) & 1023) + (x'49a0f4dd15e5a8e3'::bigint & 1023)) & 1023)"
for i in 0 1 2 3; do
  sql "${SH[$i]}" "$schema
    insert into pgbench_accounts select aid, (aid - 1) / 100000 + 1, 0, ''
      from generate_series(1, 100000 * $scale) aid where $bucket / 256 = $i;" & loaders+=($!)
done
for p in "${loaders[@]}"; do wait "$p"; done
# Branches and tellers are unsharded: they live on the default shard (s0).
sql "${SH[0]}" "insert into pgbench_branches select b, 0, '' from generate_series(1, $scale) b;
  insert into pgbench_tellers select t, (t - 1) / 10 + 1, 0, '' from generate_series(1, 10 * $scale) t;"
loaders=()
for i in 0 1 2 3; do sql "${SH[$i]}" "vacuum analyze pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history" & loaders+=($!); done
for p in "${loaders[@]}"; do wait "$p"; done

# --- proxies ---------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SG1=$(free_port); SG4=$(free_port); PGB_T=$(free_port); PGB_S=$(free_port)
common="auth_method: scram-sha-256
admin: { user: admin, password: admin }
users:
  - { name: app, password: app }
pool: { mode: transaction, size: 20 }
log_level: warn"
# Both proxies shard pgbench_accounts and pgbench_history by aid (the one-shard proxy too, so
# that it parses and routes by key as a sharded deployment does); branches and tellers are
# unsharded and live on the default shard s0.
tables="schemes:
  by_aid: { type: hash, buckets: 1024 }
tables:
  pgbench_accounts: { scheme: by_aid, key: aid }
  pgbench_history: { scheme: by_aid, key: aid }"
cat >"$work/sg1.yaml" <<EOF
listen: 127.0.0.1:$SG1
$common
shards:
  - { name: s0, url: "postgres://app:app@127.0.0.1:$P0/app" }
$tables
EOF
cat >"$work/sg4.yaml" <<EOF
listen: 127.0.0.1:$SG4
$common
shards:
$(for i in 0 1 2 3; do echo "  - { name: s$i, url: \"postgres://app:app@127.0.0.1:${SH[$i]}/app\" }"; done)
$tables
EOF
"$sg_bin" serve -c "$work/sg1.yaml" >"$work/sg1.log" 2>&1 & sg1_pid=$!; pids+=("$sg1_pid")
"$sg_bin" serve -c "$work/sg4.yaml" >"$work/sg4.log" 2>&1 & sg4_pid=$!; pids+=("$sg4_pid")

mkdir "$work/pgb"; echo '"app" "app"' >"$work/pgb/userlist.txt"
for pm in transaction session; do
  [[ $pm == transaction ]] && lp=$PGB_T || lp=$PGB_S
  # Session mode holds a server connection per client: its pool must fit 64 pgbench clients.
  [[ $pm == transaction ]] && size=20 || size=70
  cat >"$work/pgb/$pm.ini" <<EOF
[databases]
app = host=127.0.0.1 port=$P0 dbname=app
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $lp
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/pgb/userlist.txt
pool_mode = $pm
default_pool_size = $size
max_client_conn = 5000
max_db_connections = 0
logfile = $work/pgb/$pm.log
pidfile = $work/pgb/$pm.pid
ignore_startup_parameters = extra_float_digits
EOF
done
chown -R postgres "$work/pgb"
"$pgbouncer_bin" -u postgres "$work/pgb/transaction.ini" >/dev/null 2>&1 & pgbt_pid=$!; pids+=("$pgbt_pid")
"$pgbouncer_bin" -u postgres "$work/pgb/session.ini" >/dev/null 2>&1 & pgbs_pid=$!; pids+=("$pgbs_pid")

for p in $SG1 $SG4 $PGB_T $PGB_S; do
  for _ in $(seq 100); do sql "$p" "select 1" >/dev/null 2>&1 && break; sleep 0.2; done
  sql "$p" "select 1" >/dev/null || { log "target on port $p is not answering"; cat "$work"/*.log "$work"/pgb/*.log >&2; exit 1; }
done

# Placement check: the proxy finds every sampled key (a misrouted key would return 0 rows),
# and a fan-out count sees every row exactly once.
n_acc=$((100000 * scale))
for k in 1 2 3 17 4242 $((n_acc / 2)) $n_acc; do
  [[ $(sql "$SG4" "select count(*) from pgbench_accounts where aid = $k") == 1 ]] || { log "key $k not found through the 4-shard proxy"; exit 1; }
done
[[ $(sql "$SG4" "select count(*) from pgbench_accounts") == "$n_acc" ]] || { log "fan-out count is wrong"; exit 1; }

# --- running pgbench -------------------------------------------------------------------------
clk=$(getconf CLK_TCK)
mkdir "$work/lat" "$work/scripts"
cputicks() { [[ $1 == - ]] && { echo 0; return; }; awk '{print $14 + $15}' "/proc/$1/stat"; }
# run KEY PORT PROXY_PID PGBENCH_ARGS...: one pgbench run; appends to $work/runs and lat/KEY.
run() {
  local key=$1 port=$2 ppid=$3; shift 3
  local c0 c1 out
  rm -f "$work"/pgl.*
  c0=$(cputicks "$ppid")
  out=$("$pgbench" -n -T "$secs" -p "$port" -l --log-prefix="$work/pgl" "$@" app 2>&1) || { log "pgbench failed for $key: $out"; return 1; }
  c1=$(cputicks "$ppid")
  cat "$work"/pgl.* | awk '{print $3}' >>"$work/lat/$key"
  echo "$out" | awk -v k="$key" -v c="$((c1 - c0))" -v p="$ppid" -v l="$(cut -d' ' -f1 /proc/loadavg)" '
    /^tps/ {tps=$3} /actually processed/ {n=$NF; sub(/\/.*/, "", n)} /failed transactions/ {f=$5}
    END {printf "%s %s %s %s %s %s %s\n", k, tps, n, c, f == "" ? 0 : f, p == "-" ? "no" : "yes", l}' >>"$work/runs"
  log "$key: $(tail -1 "$work/runs" | cut -d' ' -f2) tps"
}
threads() { [[ $1 == 1 ]] && echo 1 || echo 2; }

if [[ $mode == hold ]]; then
  echo "direct p0: $P0; shards p1-p4: ${SH[*]}; shardgate 1 shard: $SG1 (pid $sg1_pid);" \
    "4 shards: $SG4 (pid $sg4_pid); pgbouncer txn: $PGB_T, session: $PGB_S; user/password app/app, db app; Ctrl-C ends"
  trap 'exit 0' INT TERM
  while :; do sleep 1; done
fi
if [[ $mode == profile ]]; then
  mkdir -p "$profile_dir"
  for m in extended simple; do
    log "profiling shardgate under pgbench -S -M $m, 16 clients"
    perf record -e cpu-clock -F 1999 --call-graph dwarf,16384 -p "$sg1_pid" -o "$work/perf.data" -- sleep 8 >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
    "$pgbench" -n -S -M "$m" -c 16 -j 2 -T 7 -p "$SG1" app >"$profile_dir/pgbench-$m.txt" 2>&1
    wait "$perf_pid" || true
    perf report -i "$work/perf.data" --no-children --stdio --percent-limit 0.7 --sort symbol -g none 2>/dev/null >"$profile_dir/self-$m.txt"
    perf report -i "$work/perf.data" --children --stdio --percent-limit 2 --sort symbol -g none 2>/dev/null >"$profile_dir/children-$m.txt"
    # Syscalls per statement: strace counts over a short run.
    timeout 6 strace -c -f -p "$(ls /proc/$sg1_pid/task | paste -sd,)" -o "$profile_dir/strace-$m.txt" &
    st=$!; sleep 0.5
    "$pgbench" -n -S -M "$m" -c 16 -j 2 -T 4 -p "$SG1" app >"$profile_dir/pgbench-strace-$m.txt" 2>&1
    kill -INT "$st" 2>/dev/null || true; wait "$st" 2>/dev/null || true
  done
  log "profiles in $profile_dir"
  exit 0
fi

log "single-shard pgbench -S ($rounds round(s) of ${secs}s per run)"
for r in $(seq "$rounds"); do
  for m in simple extended prepared; do
    [[ $m == prepared ]] && { bport=$PGB_S; bpid=$pgbs_pid; bname=pgbouncer-session; } \
                         || { bport=$PGB_T; bpid=$pgbt_pid; bname=pgbouncer-txn; }
    for c in 1 16 64; do
      targets=("direct $P0 -" "$bname $bport $bpid" "shardgate $SG1 $sg1_pid")
      for i in 0 1 2; do
        read -r name p pid <<<"${targets[$(((i + r) % 3))]}"
        run "S|$m|$c|$name" "$p" "$pid" -S -M "$m" -c "$c" -j "$(threads "$c")"
      done
    done
  done
done

cat >"$work/scripts/keyed.sql" <<'EOF'
\set aid random(1, :naccounts)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
EOF
cat >"$work/scripts/transfer.sql" <<'EOF'
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance - 1 WHERE aid = :a;
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :b;
END;
EOF
cat >"$work/scripts/orderby.sql" <<'EOF'
\set x random(1, :naccounts - 1000)
SELECT aid, abalance FROM pgbench_accounts WHERE aid > :x ORDER BY aid LIMIT 100;
EOF
cat >"$work/scripts/groupby.sql" <<'EOF'
SELECT bid, count(*), sum(abalance) FROM pgbench_accounts GROUP BY bid ORDER BY bid;
EOF
log "four shards: keyed script and TPC-B-like mix, 16 clients, -M extended"
for r in $(seq "$rounds"); do
  for w in keyed tpcb; do
    [[ $w == keyed ]] && wargs=(-f "$work/scripts/keyed.sql" -D "naccounts=$n_acc") || wargs=(-b tpcb-like)
    targets=("direct $P0 -" "shardgate-1shard $SG1 $sg1_pid" "shardgate-4shards $SG4 $sg4_pid")
    for i in 0 1 2; do
      read -r name p pid <<<"${targets[$(((i + r) % 3))]}"
      run "4|$w|16|$name" "$p" "$pid" -M extended -c 16 -j 2 "${wargs[@]}"
    done
  done
done

# Keys for the transfers: two on shard 0 (p1), one on shard 1 (p2).
read -r a b < <(sql "${SH[0]}" "select string_agg(aid::text, ' ') from (select aid from pgbench_accounts order by aid limit 2) t")
c2=$(sql "${SH[1]}" "select min(aid) from pgbench_accounts")
log "cross-shard: transfers (a=$a b=$b c=$c2), fan-out ORDER BY LIMIT 100, GROUP BY; 1 client"
for r in $(seq "$rounds"); do
  run "X|transfer-1shard|1|shardgate-4shards" "$SG4" "$sg4_pid" -M extended -c 1 -f "$work/scripts/transfer.sql" -D "a=$a" -D "b=$b"
  run "X|transfer-2shards-2pc|1|shardgate-4shards" "$SG4" "$sg4_pid" -M extended -c 1 -f "$work/scripts/transfer.sql" -D "a=$a" -D "b=$c2"
  run "X|transfer|1|direct" "$P0" - -M extended -c 1 -f "$work/scripts/transfer.sql" -D "a=$a" -D "b=$c2"
  for q in orderby groupby; do
    run "X|$q|1|direct" "$P0" - -M extended -c 1 -f "$work/scripts/$q.sql" -D "naccounts=$n_acc"
    run "X|$q|1|shardgate-4shards" "$SG4" "$sg4_pid" -M extended -c 1 -f "$work/scripts/$q.sql" -D "naccounts=$n_acc"
  done
done

log "$idle_n idle client connections"
idle_sg=$("$env_bin" idle "postgres://app:app@127.0.0.1:$SG1/app" "$idle_n" "$sg1_pid")
idle_pgb=$("$env_bin" idle "postgres://app:app@127.0.0.1:$PGB_T/app" "$idle_n" "$pgbt_pid")

# --- report ----------------------------------------------------------------------------------
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
out="bench/results/$(date +%F)-$mode.md"
mkdir -p bench/results
MODE=$mode SECS=$secs ROUNDS=$rounds SCALE=$scale IDLE_N=$idle_n IDLE_SG=$idle_sg IDLE_PGB=$idle_pgb \
  CLK=$clk LOAD_BEFORE="$load_before" LOAD_AFTER="$load_after" COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo +dirty)" \
  PGB_VERSION="$("$pgbouncer_bin" --version | head -1)" PG_VERSION="$("$psql" --version)" \
  python3 bench/report.py "$work/runs" "$work/lat" >"$out"
log "wrote $out"
cat "$out"
