#!/usr/bin/python3
"""native_bench.py: pgshim's native answers vs the legacy functions, per function and call shape,
plus pgbench -S TPS through pgshim with interception configured vs not.

    tests/bench/native [--scale 1] [--calls 200] [--db NAME] [--only SUBSTR] [--json FILE]
                       [--memo-ttl SECS] [--no-prewarm] [--pgbench-seconds 5] [--pgbench-rounds 10]
                       [--skip-pgbench] [--no-calls]

Part 1: for every shape of tests/bench/legacy_bench.py (same argument generators, imported), runs
--calls random calls, each one twice -- through pgshim with the tenant in native mode and
directly to PostgreSQL (the legacy function) -- interleaved call by call (the order within a pair
alternates), and prints median and p95 wall latency (execute + fetch, psycopg2 client-side
binding as Django sends it, session TimeZone UTC), the speedup legacy/native, how many of the
calls pgshim answered natively (SHOW INTERCEPTS native counter delta; "n/a" when the console
cannot say) and how many answers differed (multiset compare where spec 10 calls the legacy order
undefined). Each call is first run once untimed on both sides (--no-prewarm turns that off):
the fixture's jobneed is larger than shared_buffers, so without it whichever side runs first pays
the page reads for both, the latencies of I/O-bound shapes are a 50/50 mix of cold and warm runs
and their medians jump between runs; prewarmed, both sides are timed on cached pages (the steady
state of a hot working set). --memo-ttl sets native_butree_ttl on that pgshim (its in-memory BU tree, capability
answer and group memberships; 0, the default, benches without them, as pgshim's default is).

Part 2: pgbench -S (select-only, simple protocol) through two pgshim instances in transaction
mode, one with `[tenant.<pgbench db>] all = native` and one without any interception sections;
--pgbench-rounds rounds of four runs each, A B B A (which instance is A alternates per round).
Each round yields one ratio configured / not configured, so drift of the shared machine between
rounds, and linear drift within one, cancels; the verdict is on the median of those per-round
ratios, printed with their spread (min, max, interquartile range). Target: configured within 3%
of not configured. Because TPS on the shared machine swings by more than that, each run also
records the pgshim process's own CPU time per transaction (/proc/PID/schedstat), the cost the
interception configuration could add, with the same per-round ratios.

Servers: the PostgreSQL exported by `eval "$(tests/harness/pgenv start ...)"` if PGPORT answers,
else a throw-away one on --pg-port started and stopped here. The fixture database (--db, default
native_s<scale>) is loaded with tests/fixture/load when missing or of another scale. pgshim
instances on --pgshim-port .. +2, started and stopped by PID (tests/integration/proxyctl.py). Use
a non-sanitizer build (PGSHIM_BIN or --pgshim-bin) for meaningful numbers.
"""

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import legacy_bench as lb  # noqa: E402
import proxyctl  # noqa: E402

UNORDERED_FUNCS = {"fun_getjobneed", "fun_getexttourjobneed", "fn_getassetdetails",
                   "fn_get_schedule_for_adhoc"}
PASSWORD = "postgres"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--db", default=None, help="fixture database (default native_s<scale>)")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", help="only shapes whose function or label contains this")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--pgbench-seconds", type=int, default=5)
    ap.add_argument("--pgbench-rounds", type=int, default=10)
    ap.add_argument("--no-prewarm", dest="prewarm", action="store_false",
                    help="do not run each call once untimed on both sides first")
    ap.add_argument("--memo-ttl", type=float, default=0.0,
                    help="native_butree_ttl of the native pgshim (seconds; 0 = no in-memory data)")
    ap.add_argument("--pgbench-clients", type=int, default=10)
    ap.add_argument("--pgbench-scale", type=int, default=5)
    ap.add_argument("--skip-pgbench", action="store_true")
    ap.add_argument("--no-calls", action="store_true", help="skip part 1")
    ap.add_argument("--pgshim-bin", default=os.environ.get("PGSHIM_BIN") or proxyctl.find_pgshim_binary(release=True))
    ap.add_argument("--pg-port", type=int, default=int(os.environ.get("PGSHIM_BENCH_PG_PORT", "55201")))
    ap.add_argument("--pgshim-port", type=int,
                    default=int(os.environ.get("PGSHIM_BENCH_PROXY_PORT", "65201")))
    return ap.parse_args()


def caps_ini_key():
    """The [pgshim] key naming the capability-query file, if this source tree has one."""
    for rel in ("proxy/config.c", "proxy/flags.c", "proxy/intercept.c", "proxy/native.c"):
        try:
            with open(os.path.join(REPO, rel)) as f:
                src = f.read()
        except OSError:
            continue
        for key in ("caps_query_file", "capabilities_query_file", "caps_query", "caps_sql_file"):
            if '"%s"' % key in src:
                return key
    return None


def ensure_fixture(pg, db, scale):
    conn = psycopg2.connect(pg.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select 1 from pg_database where datname = %s", (db,))
        exists = cur.fetchone() is not None
    conn.close()
    if exists:
        conn = psycopg2.connect(pg.dsn(db))
        with conn.cursor() as cur:
            try:
                cur.execute("select value from fixture_meta where key = 'scale'")
                have = cur.fetchone()
            except psycopg2.Error:
                have = None
        conn.close()
        if have and float(have[0]) == float(scale):
            return
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(pg.pg_port), PGUSER="postgres",
               PGPASSWORD=PASSWORD)
    log("loading fixture %s at scale %g" % (db, scale))
    subprocess.run([os.path.join(REPO, "tests", "fixture", "load"), "--db", db, "--scale",
                    str(scale), "--drop", "--quiet"], env=env, check=True, timeout=1800)


def start_shim(binary, port, pg_port, basedir, sections, memo_ttl=0.0):
    extra = {"admin_users": "postgres"}
    if memo_ttl > 0:
        extra["native_butree_ttl"] = "%g" % memo_ttl
    key = caps_ini_key()
    if key:
        extra[key] = os.path.join(REPO, "tests", "fixture", "caps_query.sql")
    p = proxyctl.Proxy("pgshim", binary, port, pg_port, pool_mode="transaction", pool_size=20,
                       extra=extra, basedir=basedir, sections=sections,
                       name="pgshim-bench-%d" % port)
    return p.start()


def native_counts(p, tenant):
    """{function: native count} from SHOW INTERCEPTS, or None."""
    try:
        conn = psycopg2.connect(p.dsn("pgshim"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SHOW INTERCEPTS %s" % tenant)
            cols = [d.name for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        conn.close()
    except psycopg2.Error:
        return None
    if not rows or "native" not in rows[0]:
        return None
    return {r["function"]: int(r["native"] or 0) for r in rows}


def normalise(fn, label, rows):
    rows = [tuple(r) for r in rows]
    if fn in UNORDERED_FUNCS:
        return sorted(rows, key=repr)
    if label.startswith("get_all_bu_of_client") and rows and isinstance(rows[0][0], list):
        return [(sorted(rows[0][0]),)] + rows[1:]
    if fn == "fn_getbulist_basedon_idnf" and rows and isinstance(rows[0][0], str):
        return [(sorted(rows[0][0].split(" ")),)]
    return rows


def timed(cur, q, params):
    t0 = time.perf_counter()
    try:
        cur.execute(q, params)
        rows = cur.fetchall()
        err = None
    except psycopg2.Error as e:
        rows, err = None, e.pgcode
    return (time.perf_counter() - t0) * 1000.0, rows, err


def call_bench(a, pg, shim, db):
    caps_path = os.path.join(REPO, "tests", "fixture", "caps_query.sql")
    with open(caps_path) as f:
        caps_sql = f.read()
    direct = psycopg2.connect(pg.dsn(db))
    direct.autocommit = True
    via = psycopg2.connect(shim.dsn(db))
    via.autocommit = True
    dc, vc = direct.cursor(), via.cursor()
    for c in (dc, vc):
        c.execute("SET TimeZone = 'UTC'")
    dc.execute("SELECT now()")
    now = dc.fetchone()[0]
    data = lb.Data(dc)
    rng = random.Random(a.seed)
    results = []
    for fn, label, sql, inline, gen in lb.shapes(data, rng, now):
        if a.only and a.only not in fn and a.only not in label:
            continue
        if sql is None:
            sql = caps_sql
        stat_fn = "get_web_caps_for_client" if fn == "capability query" else fn
        before = native_counts(shim, db)
        lat_n, lat_l, differ, errors = [], [], 0, 0
        for k in range(a.calls + 5):
            args = gen()
            q, params = (sql.format(*args), None) if inline else (sql, args if args else None)
            first_native = k % 2 == 0
            pairs = [(vc, lat_n), (dc, lat_l)] if first_native else [(dc, lat_l), (vc, lat_n)]
            if a.prewarm:
                for cur, _ in pairs:
                    timed(cur, q, params)
            got = {}
            for cur, lat in pairs:
                ms, rows, err = timed(cur, q, params)
                got[id(cur)] = (err, None if rows is None else normalise(fn, label, rows))
                if k >= 5:
                    lat.append(ms)
            if k >= 5:
                if got[id(vc)] != got[id(dc)]:
                    differ += 1
                if got[id(dc)][0] is not None:
                    errors += 1
        after = native_counts(shim, db)
        answered = None
        if before is not None and after is not None:
            answered = after.get(stat_fn, 0) - before.get(stat_fn, 0)
        n_calls = (a.calls + 5) * (2 if a.prewarm else 1)
        r = dict(function=fn, shape=label, calls=len(lat_n),
                 legacy_median=statistics.median(lat_l), legacy_p95=lb.percentile(lat_l, 0.95),
                 native_median=statistics.median(lat_n), native_p95=lb.percentile(lat_n, 0.95),
                 answered=answered, answered_of=n_calls, differ=differ, errors=errors)
        r["speedup_median"] = r["legacy_median"] / r["native_median"] if r["native_median"] else None
        r["speedup_p95"] = r["legacy_p95"] / r["native_p95"] if r["native_p95"] else None
        results.append(r)
        log("%-26s legacy %7.2f/%7.2f  pgshim %7.2f/%7.2f  x%5.2f  native %s/%d  differ %d  %s"
            % (fn, r["legacy_median"], r["legacy_p95"], r["native_median"], r["native_p95"],
               r["speedup_median"] or 0, "n/a" if answered is None else answered, n_calls,
               differ, label))
    # The floor: a statement that is not intercepted, direct vs through pgshim. A native answer
    # cannot be faster than this relative to a legacy function that costs PostgreSQL nothing.
    lat_n, lat_l = [], []
    for k in range(a.calls + 5):
        pairs = [(vc, lat_n), (dc, lat_l)] if k % 2 == 0 else [(dc, lat_l), (vc, lat_n)]
        for cur, lat in pairs:
            ms, _, _ = timed(cur, "select 1", None)
            if k >= 5:
                lat.append(ms)
    r = dict(function="(floor) select 1", shape="not intercepted: pass-through vs direct",
             calls=len(lat_n), legacy_median=statistics.median(lat_l),
             legacy_p95=lb.percentile(lat_l, 0.95), native_median=statistics.median(lat_n),
             native_p95=lb.percentile(lat_n, 0.95), answered=None, answered_of=a.calls + 5,
             differ=0, errors=0)
    r["speedup_median"] = r["legacy_median"] / r["native_median"]
    r["speedup_p95"] = r["legacy_p95"] / r["native_p95"]
    results.append(r)
    log("%-26s direct %7.2f/%7.2f  pgshim %7.2f/%7.2f  x%5.2f" % (
        r["function"], r["legacy_median"], r["legacy_p95"], r["native_median"], r["native_p95"],
        r["speedup_median"]))
    direct.close()
    via.close()
    return results


def proc_cpu_seconds(pid):
    """CPU seconds the process has used so far (Linux: /proc/PID/schedstat in nanoseconds, summed
    over its threads by the kernel; /proc/PID/stat in clock ticks where schedstat is missing), or
    None."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def pgbench_tps(port, db, args, timeout, pid=None):
    """TPS of one pgbench run; with pid also the CPU microseconds that process spent per
    transaction (TPS swings with the load of the shared machine; the proxy's own CPU per
    transaction hardly does)."""
    env = dict(os.environ, PGPASSWORD=PASSWORD)
    argv = ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n"] + args + [db]
    cpu0 = proc_cpu_seconds(pid) if pid else None
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    cpu1 = proc_cpu_seconds(pid) if pid else None
    m = re.search(r"^tps = ([0-9.]+)", r.stdout, re.M)
    n = re.search(r"^number of transactions actually processed: ([0-9]+)", r.stdout, re.M)
    if r.returncode != 0 or not m:
        log("pgbench on %d failed (exit %d): %s" % (port, r.returncode, r.stdout[-1500:]))
        return (None, None) if pid else None
    if not pid:
        return float(m.group(1))
    us = None
    if cpu0 is not None and cpu1 is not None and n and int(n.group(1)) > 0:
        us = (cpu1 - cpu0) * 1e6 / int(n.group(1))
    return float(m.group(1)), us


def pgbench_part(a, pg, basedir):
    db = "native_pgbench"
    conn = psycopg2.connect(pg.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select 1 from pg_database where datname = %s", (db,))
        if cur.fetchone() is None:
            cur.execute("create database %s" % db)
            conn.close()
            log("pgbench -i -s %d" % a.pgbench_scale)
            env = dict(os.environ, PGPASSWORD=PASSWORD)
            subprocess.run(["pgbench", "-i", "-q", "-s", str(a.pgbench_scale), "-h", "127.0.0.1",
                            "-p", str(pg.pg_port), "-U", "postgres", db], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        else:
            conn.close()
    with_icpt = start_shim(a.pgshim_bin, a.pgshim_port + 1, pg.pg_port, basedir,
                           {"intercept": [("all", "off")],
                            "tenant.%s" % db: [("all", "native")]})
    without = start_shim(a.pgshim_bin, a.pgshim_port + 2, pg.pg_port, basedir, {})
    res = {"configured": [], "not configured": [], "ratios": [],
           "cpu configured": [], "cpu not configured": [], "cpu ratios": []}
    try:
        targets = [("configured", with_icpt), ("not configured", without)]
        args = ["-S", "-c", str(a.pgbench_clients), "-j", "2", "-T", str(a.pgbench_seconds)]
        # one short unmeasured run each: connections, caches and the CPU governor settle first
        for name, p in targets:
            pgbench_tps(p.port, db, ["-S", "-c", str(a.pgbench_clients), "-j", "2", "-T", "2"], 60)
        # Each round runs A B B A (A and B alternate between rounds), so a load change on the
        # shared machine that is linear over the round cancels out of the round's ratio.
        for rnd in range(a.pgbench_rounds):
            first, second = targets if rnd % 2 == 0 else list(reversed(targets))
            got = {"configured": [], "not configured": []}
            cpu = {"configured": [], "not configured": []}
            for name, p in (first, second, second, first):
                tps, us = pgbench_tps(p.port, db, args, a.pgbench_seconds * 3 + 60,
                                      pid=p.proc.pid if p.proc else None)
                log("pgbench round %d %-15s tps=%s pgshim cpu us/xact=%s" % (rnd + 1, name, tps, us))
                if tps is not None:
                    res[name].append(tps)
                    got[name].append(tps)
                if us is not None:
                    res["cpu " + name].append(us)
                    cpu[name].append(us)
            if len(got["configured"]) == 2 and len(got["not configured"]) == 2:
                res["ratios"].append(sum(got["configured"]) / sum(got["not configured"]))
            if len(cpu["configured"]) == 2 and len(cpu["not configured"]) == 2:
                res["cpu ratios"].append(sum(cpu["configured"]) / sum(cpu["not configured"]))
    finally:
        for p in (with_icpt, without):
            p.stop()
            rep = p.sanitizer_report()
            if rep:
                log("sanitizer report from %s:\n%s" % (p.name, rep))
            else:
                p.cleanup()
    return res


def main():
    a = parse_args()
    if not a.pgshim_bin:
        raise SystemExit("no pgshim binary: build one or pass --pgshim-bin")
    db = a.db or ("native_s%s" % ("%g" % a.scale).replace(".", "_"))
    pg = proxyctl.PgEnv.from_environment()
    own_pg = None
    if pg is None:
        own_pg = proxyctl.PgEnv(a.pg_port, None)
        pg = own_pg.start()
    basedir = tempfile.mkdtemp(prefix="pgshim-native-bench-")
    out = dict(db=db, scale=a.scale, calls=a.calls, seed=a.seed, binary=a.pgshim_bin)
    try:
        if not a.no_calls:
            ensure_fixture(pg, db, a.scale)
            shim = start_shim(a.pgshim_bin, a.pgshim_port, pg.pg_port, basedir,
                              {"intercept": [("all", "off")], "tenant.%s" % db: [("all", "native")]},
                              memo_ttl=a.memo_ttl)
            try:
                out["calls_results"] = call_bench(a, pg, shim, db)
            finally:
                shim.stop()
                rep = shim.sanitizer_report()
                if rep:
                    log("sanitizer report:\n" + rep)
                else:
                    shim.cleanup()
        if not a.skip_pgbench:
            out["pgbench"] = pgbench_part(a, pg, basedir)
    finally:
        if own_pg is not None:
            own_pg.stop()

    if "calls_results" in out:
        print()
        print("Legacy function (direct to PostgreSQL) vs pgshim native mode, db %s (scale %g), "
              "%d interleaved calls per shape%s, ms" % (db, a.scale, a.calls,
                                                         ", each prewarmed" if a.prewarm else ""))
        print()
        print("| function | caller shape | legacy median | legacy p95 | pgshim median | pgshim p95 "
              "| speedup median | speedup p95 | answered natively (incl. 5 warm-up calls and the prewarm runs) | differ |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in out["calls_results"]:
            print("| %s | %s | %.2f | %.2f | %.2f | %.2f | %sx | %sx | %s | %d |" % (
                r["function"], r["shape"].replace("|", "\\|"), r["legacy_median"], r["legacy_p95"],
                r["native_median"], r["native_p95"],
                "%.2f" % r["speedup_median"] if r["speedup_median"] else "-",
                "%.2f" % r["speedup_p95"] if r["speedup_p95"] else "-",
                "n/a" if r["answered"] is None else "%d/%d" % (r["answered"], r["answered_of"]),
                r["differ"]))
    if "pgbench" in out:
        pb = out["pgbench"]
        med = {k: statistics.median(v) if v else None for k, v in pb.items() if "ratios" not in k}
        print()
        print("pgbench -S through pgshim (transaction mode), %d clients, %d rounds of 4 x %d s "
              "(A B B A)" % (a.pgbench_clients, a.pgbench_rounds, a.pgbench_seconds))
        print()
        print("| pgshim | TPS per round | median TPS |")
        print("| --- | --- | ---: |")
        for k in ("configured", "not configured"):
            print("| interception %s | %s | %s |" % (
                k, ", ".join("%.0f" % x for x in pb[k]), "%.0f" % med[k] if med[k] else "-"))
        for k in ("configured", "not configured"):
            v = pb["cpu " + k]
            if v:
                print("| pgshim CPU us per transaction, interception %s | %s | %.1f |" % (
                    k, ", ".join("%.1f" % x for x in v), statistics.median(v)))
        for key, label in (("ratios", "TPS"), ("cpu ratios", "pgshim CPU per transaction")):
            rs = sorted(pb[key])
            if not rs:
                continue
            ratio = statistics.median(rs)
            q1, q3 = (lb.percentile(rs, 0.25), lb.percentile(rs, 0.75)) if len(rs) > 1 else (rs[0], rs[0])
            print("| per-round %s ratio configured / not configured | %s | median %.3f |"
                  % (label, ", ".join("%.3f" % x for x in pb[key]), ratio))
            out["pgbench_" + key.replace(" ", "_")] = dict(median=ratio, min=rs[0], q1=q1, q3=q3,
                                                          max=rs[-1], rounds=len(rs))
        print()
        for key, label in (("ratios", "TPS"), ("cpu ratios", "pgshim CPU per transaction")):
            d = out.get("pgbench_" + key.replace(" ", "_"))
            if d:
                print("%s: median per-round ratio %.3f (%s the 3%% target); spread min %.3f, max "
                      "%.3f, interquartile %.3f-%.3f over %d rounds."
                      % (label, d["median"], "within" if abs(1 - d["median"]) <= 0.03 else "OUTSIDE",
                         d["min"], d["max"], d["q1"], d["q3"], d["rounds"]))
        if med.get("configured") and med.get("not configured"):
            print("Ratio of median TPS %.3f." % (med["configured"] / med["not configured"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
