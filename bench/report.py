"""Turns the raw measurements of bench/run.sh into the markdown results file.

Input: the `runs` file (one line per pgbench run: key, tps, transactions, proxy CPU ticks,
failed transactions, whether a proxy was measured, 1-minute load) and a directory of latency
files (one per key, every transaction's latency in microseconds, all rounds together), plus
the environment variables run.sh sets (mode, machine load, idle-connection measurements).
Output: markdown on stdout. It computes, it does not measure: every number comes from the
files; TPS is the median over rounds, percentiles are over all rounds' transactions, CPU is
total proxy CPU over total statements.
"""

import os
import statistics
import sys
from collections import OrderedDict

runs_file, lat_dir = sys.argv[1], sys.argv[2]
env = os.environ
clk = int(env["CLK"])

rows = OrderedDict()
loads = []
for line in open(runs_file):
    key, tps, n, ticks, failed, has_proxy, load = line.split()
    r = rows.setdefault(key, {"tps": [], "n": 0, "ticks": 0, "failed": 0})
    r["tps"].append(float(tps))
    r["n"] += int(n)
    r["ticks"] += int(ticks)
    r["failed"] += int(failed)
    r["proxy"] = has_proxy == "yes"
    loads.append(float(load))


def statements(key):
    """Statements per transaction of each workload (for CPU per statement)."""
    section, what = key.split("|")[:2]
    if section == "S":
        return 1
    return {"keyed": 2, "tpcb": 7, "transfer-1shard": 4, "transfer-2shards-2pc": 4,
            "transfer": 4}.get(what, 1)


for key, r in rows.items():
    lat = sorted(int(x) for x in open(os.path.join(lat_dir, key)) if x.strip())
    r["p50"] = lat[(len(lat) - 1) // 2] if lat else float("nan")
    r["p99"] = lat[int((len(lat) - 1) * 0.99)] if lat else float("nan")
    r["tps_med"] = statistics.median(r["tps"])
    stmts = r["n"] * statements(key)
    r["cpu10k"] = (r["ticks"] / clk) / stmts * 10000 if r["proxy"] and stmts else None


def get(key):
    return rows.get(key)


def cpu(r):
    return "-" if r["cpu10k"] is None else f"{r['cpu10k']:.3f}"


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), "unknown")
    mem = next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    return f"{os.cpu_count()} x {model}, {int(mem) / 1048576:.1f} GiB RAM"


out = []
p = out.append
p(f"# shardgate benchmark, {env['MODE']} mode")
p("")
p(f"- machine: {machine()} (shared with other builds: absolute numbers are noisy)")
p(f"- load average (1/5/15 min): {env['LOAD_BEFORE']} before, {env['LOAD_AFTER']} after; "
  f"1-min load during the runs: min {min(loads):.2f}, max {max(loads):.2f}")
p(f"- shardgate {env['COMMIT']}; {env['PG_VERSION']}; {env['PGB_VERSION']}")
p(f"- {env['ROUNDS']} round(s) of {env['SECS']} s per run, targets alternating inside each "
  f"round; pgbench scale {env['SCALE']}; pools of 20 server connections (PgBouncer session "
  f"mode: 70); shardgate always in transaction pooling")
p("- TPS: median over rounds; p50/p99: over every transaction of every round (pgbench -l); "
  "proxy CPU: utime+stime of the proxy process per 10,000 statements")
p("")
p("## Single shard: `pgbench -S` (one SELECT by primary key)")
p("")
p("PgBouncer runs in transaction mode for `-M simple`/`-M extended` and in session mode for "
  "`-M prepared` (PgBouncer 1.18 has no prepared statements in transaction mode).")
p("")
p("| protocol | clients | target | TPS | p50 µs | p99 µs | proxy CPU s / 10k stmts | failed |")
p("|---|---:|---|---:|---:|---:|---:|---:|")
for key, r in rows.items():
    s, m, c, t = key.split("|")
    if s == "S":
        p(f"| {m} | {c} | {t} | {r['tps_med']:.0f} | {r['p50']} | {r['p99']} | {cpu(r)} | {r['failed']} |")
p("")
p("## Four shards: keyed script and TPC-B-like, 16 clients, `-M extended`")
p("")
p("`keyed`: an UPDATE and a SELECT by `aid` (each a single-shard statement, autocommit). "
  "`tpcb`: pgbench's built-in TPC-B-like transaction; `pgbench_accounts` and `pgbench_history` "
  "are sharded by `aid`, `pgbench_branches` and `pgbench_tellers` are unsharded (on s0), so "
  "a transaction whose account is not on s0 (3 in 4) commits over two shards with 2PC. "
  "CPU per statement counts every statement of the script (tpcb: 7 with BEGIN/END).")
p("")
p("| workload | target | TPS | p50 µs | p99 µs | proxy CPU s / 10k stmts | failed |")
p("|---|---|---:|---:|---:|---:|---:|")
for key, r in rows.items():
    s, w, c, t = key.split("|")
    if s == "4":
        p(f"| {w} | {t} | {r['tps_med']:.0f} | {r['p50']} | {r['p99']} | {cpu(r)} | {r['failed']} |")
p("")
p("## Cross-shard, 1 client, `-M extended`")
p("")
p("Transfer: BEGIN; two UPDATEs by `aid`; END; with both accounts on one shard, or on two "
  "(PREPARE TRANSACTION, decision record, COMMIT PREPARED). ORDER BY: "
  "`WHERE aid > :x ORDER BY aid LIMIT 100` (every shard, merged). GROUP BY: "
  "`SELECT bid, count(*), sum(abalance) ... GROUP BY bid ORDER BY bid` over every row. "
  "`direct` is p0, one Postgres holding all rows.")
p("")
p("| query | target | TPS | p50 µs | p99 µs | failed |")
p("|---|---|---:|---:|---:|---:|")
for key, r in rows.items():
    s, w, c, t = key.split("|")
    if s == "X":
        p(f"| {w} | {t} | {r['tps_med']:.0f} | {r['p50']} | {r['p99']} | {r['failed']} |")
p("")
idle_n = env["IDLE_N"]
sg_b, sg_a, sg_per = env["IDLE_SG"].split()
pb_b, pb_a, pb_per = env["IDLE_PGB"].split()
p(f"## {idle_n} idle client connections (each ran `SELECT 1` once)")
p("")
p("| target | RSS before KiB | RSS after KiB | KiB per connection |")
p("|---|---:|---:|---:|")
p(f"| shardgate | {sg_b} | {sg_a} | {sg_per} |")
p(f"| pgbouncer-txn | {pb_b} | {pb_a} | {pb_per} |")
p("")


def ratio(a, b):
    return a / b if a is not None and b else float("nan")


def verdict(ok):
    return "met" if ok else "**missed**"


p("## Targets of issue 8 (ratios from this run)")
p("")
p("| target | measured | goal | |")
p("|---|---:|---:|---|")
for m in ("extended", "simple"):
    sg, pb = get(f"S|{m}|16|shardgate"), get(f"S|{m}|16|pgbouncer-txn")
    if sg and pb:
        t = ratio(sg["tps_med"], pb["tps_med"])
        c = ratio(sg["cpu10k"], pb["cpu10k"])
        p(f"| `-M {m}`, 16 clients: shardgate TPS / PgBouncer TPS | {t:.2f}x | >= 1.0x | {verdict(t >= 1.0)} |")
        p(f"| `-M {m}`, 16 clients: shardgate CPU / PgBouncer CPU per statement | {c:.2f}x | <= 1.0x | {verdict(c <= 1.0)} |")
for m in ("extended", "simple"):
    sg, d = get(f"S|{m}|1|shardgate"), get(f"S|{m}|1|direct")
    if sg and d:
        added = sg["p50"] - d["p50"]
        p(f"| `-M {m}`, 1 client: added p50 latency over direct | {added} µs | <= 40 µs | {verdict(added <= 40)} |")
one, two = get("X|transfer-1shard|1|shardgate-4shards"), get("X|transfer-2shards-2pc|1|shardgate-4shards")
if one and two:
    t = ratio(two["p50"], one["p50"])
    p(f"| 2-shard 2PC transfer p50 / 1-shard transfer p50 | {t:.2f}x | <= 1.6x | {verdict(t <= 1.6)} |")
for q, goal in (("orderby", 1.5), ("groupby", None)):
    sg, d = get(f"X|{q}|1|shardgate-4shards"), get(f"X|{q}|1|direct")
    if sg and d:
        t = ratio(sg["p50"], d["p50"])
        if goal:
            p(f"| fan-out ORDER BY LIMIT 100, 4 shards p50 / single Postgres p50 | {t:.2f}x | <= {goal}x | {verdict(t <= goal)} |")
        else:
            p(f"| GROUP BY aggregate, 4 shards p50 / single Postgres p50 | {t:.2f}x | (no goal) | |")
per = float(sg_per)
p(f"| proxy memory per idle client | {per:.1f} KiB | <= 64 KiB | {verdict(per <= 64)} |")
print("\n".join(out))
