#!/usr/bin/python3
"""cache_bench: pgshim cache mode (Redis) vs the legacy functions, at scale 1.

Part 1 (hits): for every caller shape of tests/bench/legacy_bench.py (same argument generators),
each iteration draws arguments, calls once through pgshim to make sure the result is cached
(untimed), then times the same call directly on PostgreSQL (the legacy function) and through
pgshim (a cache hit), in alternating order. Reports median and p95 per side, the ratio, how many of
the timed pgshim calls were cache hits (SHOW INTERCEPTS cache_hits delta) and how many answers
differed from PostgreSQL's.

Part 2 (mixed): --mixed-clients threads run a realistic mix for --mixed-seconds per arm: 95% legacy
calls (weights per function below, arguments drawn Zipf-skewed over the fixture's people, sites,
clients and assets, so a working set of hot users repeats as real mobile syncs do) and 5% writes
(UPDATE of one jobneed or one asset row, through the same connection, autocommit). Arms, each with
a cold cache (fresh key prefix), same seed:
  cache            cache mode, writes on, no NOTIFY triggers: table-level invalidation (pgshim
                   bumps the written table when the write commits)
  cache-fine       cache mode, writes on, etc/pgshim-notify.sql installed for the arm (removed
                   after it): scoped invalidation (per site, client or person, from the
                   triggers' payloads; pgshim's own commits wait for its listener's sync)
  cache-no-writes  cache mode, writes off: the hit-rate ceiling of this argument distribution
  native           native mode, writes on (no cache)
  legacy           directly on PostgreSQL, writes on
Hit rate = cache_hits / (cache_hits + cache_misses) over the measured window (after --warmup s).

Servers: the PostgreSQL + Redis exported by `eval "$(tests/harness/pgenv start ...)"` (PGPORT and
REDIS_PORT), else throw-away ones started here. The fixture database (--db, default
cache_s<scale>) is loaded when missing; part 2 writes to it (mdtz of jobneed/asset rows).

    tests/bench/cache [--scale 1] [--calls 200] [--only SUBSTR] [--skip-hits] [--skip-mixed]
                      [--mixed-seconds 40] [--mixed-clients 4] [--json FILE]
Smoke run: tests/bench/cache --scale 0.01 --calls 10 --mixed-seconds 5 --warmup 1
"""

import argparse
import bisect
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import legacy_bench as lb  # noqa: E402
import native_bench as nb  # noqa: E402
import pgwire  # noqa: E402
import proxyctl  # noqa: E402

CAPS_FILE = os.path.join(REPO, "tests", "fixture", "caps_query.sql")

# Read mix of part 2 (relative weights of the shapes of legacy_bench.shapes, by label prefix).
MIX = [
    ("fun_getjobneed", 30),           # mobile sync: every person, often
    ("fun_getexttourjobneed", 10),
    ("fn_getassetdetails|mdtz = now-30d", 13),  # incremental asset sync per site
    ("fn_getassetdetails|full sync", 2),
    ("fn_getassetvsquestionset", 10),
    ("fn_get_bulist|get_all_bu_of_client", 5),
    ("fn_get_bulist|get_whole_tree", 3),
    ("fn_get_bulist|load_parent_choices", 4),
    ("fn_get_bulist|fn_get_siteslist_web", 3),
    ("fn_getbulist_basedon_idnf|Django-era", 4),
    ("fn_getbulist_basedon_idnf|legacy BU", 1),
    ("fn_get_schedule_for_adhoc", 5),
    ("capability query", 7),
]

# Spec 3.12: related but not intercepted (always passed through), so not part of this bench.
OUT_OF_SCOPE = {"fn_get_siteslist_web"}

FAMILY = {
    "fun_getjobneed": "jobs", "fun_getexttourjobneed": "jobs", "fn_get_schedule_for_adhoc": "jobs",
    "fn_getassetdetails": "assets", "fn_getassetvsquestionset": "assets",
    "fn_get_bulist": "bu", "fn_get_siteslist_web": "bu", "fn_getbulist_basedon_idnf": "bu",
    "capability query": "capabilities", "get_web_caps_for_client": "capabilities",
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--db", default=None, help="fixture database (default cache_s<scale>)")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", help="part 1: only shapes whose function or label contains this")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--skip-hits", action="store_true", help="skip part 1")
    ap.add_argument("--skip-mixed", action="store_true", help="skip part 2")
    ap.add_argument("--mixed-seconds", type=float, default=40.0)
    ap.add_argument("--warmup", type=float, default=10.0, help="part 2: seconds not measured")
    ap.add_argument("--mixed-clients", type=int, default=4)
    ap.add_argument("--write-pct", type=float, default=5.0)
    ap.add_argument("--zipf", type=float, default=1.0, help="part 2: skew of argument choice")
    ap.add_argument("--arms", default="cache,cache-fine,cache-no-writes,native,legacy")
    ap.add_argument("--pgshim-bin", default=os.environ.get("PGSHIM_BIN") or proxyctl.find_pgshim_binary(release=True))
    ap.add_argument("--pg-port", type=int, default=int(os.environ.get("PGSHIM_BENCH_PG_PORT", "55201")))
    ap.add_argument("--redis-port", type=int, default=int(os.environ.get("PGSHIM_BENCH_REDIS_PORT", "56201")))
    ap.add_argument("--pgshim-port", type=int,
                    default=int(os.environ.get("PGSHIM_BENCH_PROXY_PORT", "55251")))
    return ap.parse_args()


def start_shim(a, port, pg, basedir, db, mode, prefix):
    sections = {"intercept": [("all", "off")], "tenant.%s" % db: [("all", mode)],
                "redis": [("enabled", "1"), ("host", "127.0.0.1"), ("port", str(pg.redis_port)),
                          ("key_prefix", prefix), ("timeout_ms", "100"), ("pool_size", "2")]}
    p = proxyctl.Proxy("pgshim", a.pgshim_bin, port, pg.pg_port, pool_mode="transaction",
                       pool_size=20, extra={"admin_users": "postgres", "caps_query_file": CAPS_FILE},
                       basedir=basedir, sections=sections, name="pgshim-cache-bench-%d" % port)
    p.start()
    time.sleep(0.3)  # the Redis connection comes up
    return p


def intercept_rows(p, tenant):
    """{function: row dict} from SHOW INTERCEPTS tenant."""
    conn = psycopg2.connect(p.dsn("pgshim"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SHOW INTERCEPTS %s" % tenant)
        cols = [d.name for d in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    conn.close()
    return {r["function"]: r for r in rows}


def counter(rows, fn, col):
    r = rows.get(fn)
    return int(r[col] or 0) if r else 0


# ------------------------------------------------------------------------------ part 1

READY_IDLE = b"Z\x00\x00\x00\x05I"


def wire_conn(port, db):
    c = pgwire.Conn("127.0.0.1", port, timeout=30)
    err = c.startup("postgres", db, password=nb.PASSWORD)
    if err is not None:
        raise SystemExit("cache_bench: login on %d failed: %r" % (port, err))
    c.query("SET TimeZone = 'UTC'")
    return c


def wire_timed(c, msg):
    """Sends one prepared Query message and reads raw bytes until the reply ends with
    ReadyForQuery(idle): the time to the last byte, without decoding rows in Python."""
    sock = c.sock
    t0 = time.perf_counter()
    sock.sendall(msg)
    tail = b""
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise SystemExit("cache_bench: connection closed")
        tail = (tail + chunk)[-len(READY_IDLE):]
        if tail == READY_IDLE:
            return (time.perf_counter() - t0) * 1000.0

def hit_bench(a, pg, shim, db):
    with open(CAPS_FILE) as f:
        caps_sql = f.read()
    direct = psycopg2.connect(pg.dsn(db))
    direct.autocommit = True
    via = psycopg2.connect(shim.dsn(db))
    via.autocommit = True
    dc, vc = direct.cursor(), via.cursor()
    for c in (dc, vc):
        c.execute("SET TimeZone = 'UTC'")
    wd, wv = wire_conn(pg.pg_port, db), wire_conn(shim.port, db)
    dc.execute("SELECT now()")
    now = dc.fetchone()[0]
    data = lb.Data(dc)
    rng = random.Random(a.seed)
    results = []
    for fn, label, sql, inline, gen in lb.shapes(data, rng, now):
        if a.only and a.only not in fn and a.only not in label:
            continue
        if fn in OUT_OF_SCOPE:
            continue
        if sql is None:
            sql = caps_sql
        stat_fn = "get_web_caps_for_client" if fn == "capability query" else fn
        lat_c, lat_l, differ, errors, timed_hits = [], [], 0, 0, 0
        wire_c, wire_l = [], []
        for k in range(a.calls + 5):
            args = gen()
            q, params = (sql.format(*args), None) if inline else (sql, args if args else None)
            nb.timed(vc, q, params)  # make sure it is cached (a miss stores, a hit is a hit)
            before = counter(intercept_rows(shim, db), stat_fn, "cache_hits")
            first_cache = k % 2 == 0
            pairs = [(vc, lat_c), (dc, lat_l)] if first_cache else [(dc, lat_l), (vc, lat_c)]
            got = {}
            for cur, lat in pairs:
                ms, rows, err = nb.timed(cur, q, params)
                got[id(cur)] = (err, None if rows is None else nb.normalise(fn, label, rows))
                if k >= 5:
                    lat.append(ms)
            # The same statement as raw bytes on a raw connection: time to the last byte.
            text = vc.mogrify(q, params) if params is not None else q.encode()
            msg = b"Q" + (len(text) + 5).to_bytes(4, "big") + text + b"\0"
            wpairs = [(wv, wire_c), (wd, wire_l)] if first_cache else [(wd, wire_l), (wv, wire_c)]
            for wc, lat in wpairs:
                ms = wire_timed(wc, msg)
                if k >= 5:
                    lat.append(ms)
            if k >= 5:
                after = counter(intercept_rows(shim, db), stat_fn, "cache_hits")
                timed_hits += 2 if after >= before + 2 else (1 if after > before else 0)
                if got[id(vc)] != got[id(dc)]:
                    differ += 1
                if got[id(dc)][0] is not None:
                    errors += 1
        r = dict(function=fn, shape=label, calls=len(lat_c),
                 legacy_median=statistics.median(lat_l), legacy_p95=lb.percentile(lat_l, 0.95),
                 hit_median=statistics.median(lat_c), hit_p95=lb.percentile(lat_c, 0.95),
                 wire_legacy_median=statistics.median(wire_l), wire_legacy_p95=lb.percentile(wire_l, 0.95),
                 wire_hit_median=statistics.median(wire_c), wire_hit_p95=lb.percentile(wire_c, 0.95),
                 hits=timed_hits, differ=differ, errors=errors)
        r["wire_speedup_median"] = r["wire_legacy_median"] / r["wire_hit_median"]
        r["wire_speedup_p95"] = r["wire_legacy_p95"] / r["wire_hit_p95"]
        r["speedup_median"] = r["legacy_median"] / r["hit_median"] if r["hit_median"] else None
        r["speedup_p95"] = r["legacy_p95"] / r["hit_p95"] if r["hit_p95"] else None
        results.append(r)
        log("%-26s legacy %7.2f/%7.2f  hit %6.2f/%6.2f  x%6.1f  wire x%6.1f  hits %d/%d  differ %d  %s"
            % (fn, r["legacy_median"], r["legacy_p95"], r["hit_median"], r["hit_p95"],
               r["speedup_median"] or 0, r["wire_speedup_median"], timed_hits, 2 * len(lat_c),
               differ, label))
    # The floor: a `SELECT 1` round trip (no function, one tiny row) on the same connections.
    one = b"Q" + (len(b"SELECT 1") + 5).to_bytes(4, "big") + b"SELECT 1\0"
    floor_d, floor_v = [], []
    for k in range(a.calls):
        for wc, lat in ([(wv, floor_v), (wd, floor_d)] if k % 2 == 0 else [(wd, floor_d), (wv, floor_v)]):
            lat.append(wire_timed(wc, one))
    results.append(dict(function="SELECT 1 (floor)", shape="round trip, wire", calls=a.calls,
                        wire_legacy_median=statistics.median(floor_d),
                        wire_legacy_p95=lb.percentile(floor_d, 0.95),
                        wire_hit_median=statistics.median(floor_v),
                        wire_hit_p95=lb.percentile(floor_v, 0.95), floor=True))
    log("SELECT 1 floor: direct %.3f/%.3f  through pgshim %.3f/%.3f ms" % (
        statistics.median(floor_d), lb.percentile(floor_d, 0.95), statistics.median(floor_v),
        lb.percentile(floor_v, 0.95)))
    direct.close()
    via.close()
    wd.close()
    wv.close()
    return results


# ------------------------------------------------------------------------------ part 2

class SkewedRandom(random.Random):
    """random.Random whose choice() is Zipf-skewed over the sequence (rank 1 = index 0 after a
    fixed shuffle of the indexes per length), so a working set of hot arguments repeats."""

    def __init__(self, seed, s):
        super().__init__(seed)
        self.s = s
        self._cum = {}

    def choice(self, seq):
        n = len(seq)
        if n == 0:
            raise IndexError("empty sequence")
        cum = self._cum.get(n)
        if cum is None:
            order = list(range(n))
            random.Random(n).shuffle(order)
            total, acc = 0.0, []
            for rank in range(1, n + 1):
                total += 1.0 / (rank ** self.s)
                acc.append(total)
            cum = (order, acc)
            self._cum[n] = cum
        order, acc = cum
        i = bisect.bisect_left(acc, self.random() * acc[-1])
        return seq[order[min(i, n - 1)]]


def mix_shapes(data, rng, now, caps_sql):
    """[(weight, fn, label, sql, inline, gen)] for the read mix."""
    out = []
    shapes = lb.shapes(data, rng, now)
    for key, w in MIX:
        fn_key, _, label_key = key.partition("|")
        for fn, label, sql, inline, gen in shapes:
            if fn == fn_key and (not label_key or label_key in label):
                out.append((w, fn, label, caps_sql if sql is None else sql, inline, gen))
                break
        else:
            raise SystemExit("cache_bench: no shape for %s" % key)
    return out


def write_targets(cur):
    cur.execute("SELECT id FROM jobneed WHERE id > 1 AND id % 7 = 0 ORDER BY id LIMIT 20000")
    jobs = [r[0] for r in cur.fetchall()]
    cur.execute("SELECT id FROM asset WHERE id > 1 ORDER BY id")
    assets = [r[0] for r in cur.fetchall()]
    return jobs, assets


def mixed_worker(dsn, seed, a, data, now, caps_sql, targets, write_pct, t_start, t_measure,
                 t_end, out):
    rng = SkewedRandom(seed, a.zipf)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SET TimeZone = 'UTC'")
    shapes = mix_shapes(data, rng, now, caps_sql)
    weights = [s[0] for s in shapes]
    jobs, assets = targets
    lat, by_family, errors, reads, writes = [], {}, 0, 0, 0
    while time.time() < t_start:
        time.sleep(0.01)
    while True:
        now_t = time.time()
        if now_t >= t_end:
            break
        measured = now_t >= t_measure
        if rng.random() * 100.0 < write_pct:
            if rng.random() < 0.5:
                q, params = "UPDATE jobneed SET mdtz = now() WHERE id = %s", (rng.choice(jobs),)
            else:
                q, params = "UPDATE asset SET mdtz = now() WHERE id = %s", (rng.choice(assets),)
            try:
                cur.execute(q, params)
            except psycopg2.Error:
                errors += 1
            if measured:
                writes += 1
            continue
        _, fn, label, sql, inline, gen = rng.choices(shapes, weights=weights)[0]
        args = gen()
        q, params = (sql.format(*args), None) if inline else (sql, args if args else None)
        ms, rows, err = nb.timed(cur, q, params)
        if err is not None and fn != "fn_getbulist_basedon_idnf":
            errors += 1
        if measured:
            reads += 1
            lat.append(ms)
            by_family.setdefault(FAMILY[fn], []).append(ms)
    conn.close()
    out.append(dict(lat=lat, by_family=by_family, errors=errors, reads=reads, writes=writes))


NOTIFY_SQL = os.path.join(REPO, "etc", "pgshim-notify.sql")
UNINSTALL_SQL = os.path.join(REPO, "etc", "pgshim-notify-uninstall.sql")


def psql_file(pg, db, path):
    env = dict(os.environ)
    env.update({"PGHOST": "127.0.0.1", "PGPORT": str(pg.pg_port), "PGUSER": "postgres",
                "PGPASSWORD": proxyctl.HARNESS_PASSWORDS.get("postgres", "postgres")})
    r = subprocess.run(["psql", "-X", "-q", "-d", db, "-f", path], env=env, timeout=120,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit("cache_bench: psql -f %s failed: %s" % (path, r.stderr))


def mixed_arm(a, pg, basedir, db, arm, port, data, now, caps_sql, targets):
    # Only cache-fine runs with the triggers; every other arm (cache in particular) without.
    psql_file(pg, db, NOTIFY_SQL if arm == "cache-fine" else UNINSTALL_SQL)
    try:
        return mixed_arm_run(a, pg, basedir, db, arm, port, data, now, caps_sql, targets)
    finally:
        if arm == "cache-fine":
            psql_file(pg, db, UNINSTALL_SQL)


def mixed_arm_run(a, pg, basedir, db, arm, port, data, now, caps_sql, targets):
    shim = None
    if arm == "legacy":
        dsn = pg.dsn(db)
    else:
        mode = "native" if arm == "native" else "cache"
        shim = start_shim(a, port, pg, basedir, db, mode, "pgshimbench%s" % uuid.uuid4().hex[:8])
        dsn = shim.dsn(db)
    write_pct = 0.0 if arm == "cache-no-writes" else a.write_pct
    t_start = time.time() + 1.0
    t_measure = t_start + a.warmup
    t_end = t_measure + a.mixed_seconds
    out, threads = [], []
    before = None
    try:
        for i in range(a.mixed_clients):
            th = threading.Thread(target=mixed_worker, args=(
                dsn, a.seed * 1000 + i, a, data, now, caps_sql, targets, write_pct, t_start,
                t_measure, t_end, out))
            th.start()
            threads.append(th)
        if shim is not None:
            while time.time() < t_measure:
                time.sleep(0.05)
            before = intercept_rows(shim, db)
        for th in threads:
            th.join(timeout=a.warmup + a.mixed_seconds + 120)
        after = intercept_rows(shim, db) if shim is not None else None
    finally:
        fallbacks = None
        if shim is not None:
            shim.stop()
            # commits through pgshim that waited in vain for the listener's sync (rate-limited
            # log line: the last one tells the count up to then)
            fb = [ln for ln in shim.log_text().splitlines() if "saw no sync" in ln]
            fallbacks = fb[-1].split("(", 1)[-1].rstrip(")") if fb else "none logged"
            rep = shim.sanitizer_report()
            if rep:
                log("sanitizer report:\n" + rep)
            else:
                shim.cleanup()
    lat = [x for o in out for x in o["lat"]]
    fam = {}
    for o in out:
        for k, v in o["by_family"].items():
            fam.setdefault(k, []).extend(v)
    res = dict(arm=arm, reads=sum(o["reads"] for o in out), writes=sum(o["writes"] for o in out),
               errors=sum(o["errors"] for o in out), seconds=a.mixed_seconds,
               read_median=statistics.median(lat) if lat else None,
               read_p95=lb.percentile(lat, 0.95) if lat else None,
               family={k: dict(n=len(v), median=statistics.median(v), p95=lb.percentile(v, 0.95))
                       for k, v in fam.items()})
    if arm == "cache-fine":
        res["sync_fallbacks"] = fallbacks
        log("mixed %s: sync fallbacks: %s" % (arm, fallbacks))
    if before is not None and after is not None:
        hits, misses, fh = 0, 0, {}
        for fn in after:
            h = counter(after, fn, "cache_hits") - counter(before, fn, "cache_hits")
            m = counter(after, fn, "cache_misses") - counter(before, fn, "cache_misses")
            hits += h
            misses += m
            f = FAMILY.get(fn, fn)
            fh.setdefault(f, [0, 0])
            fh[f][0] += h
            fh[f][1] += m
        res["hits"], res["misses"] = hits, misses
        res["hit_rate"] = hits / (hits + misses) if hits + misses else None
        for f, (h, m) in fh.items():
            if f in res["family"]:
                res["family"][f]["hit_rate"] = h / (h + m) if h + m else None
    log("mixed %-16s reads %6d (%.0f/s) writes %5d errors %d  median %.2f p95 %.2f  hit rate %s"
        % (arm, res["reads"], res["reads"] / a.mixed_seconds, res["writes"], res["errors"],
           res["read_median"] or 0, res["read_p95"] or 0,
           "-" if res.get("hit_rate") is None else "%.1f%%" % (100 * res["hit_rate"])))
    return res


def mixed_bench(a, pg, basedir, db):
    with open(CAPS_FILE) as f:
        caps_sql = f.read()
    conn = psycopg2.connect(pg.dsn(db))
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SET TimeZone = 'UTC'")
    cur.execute("SELECT now()")
    now = cur.fetchone()[0]
    data = lb.Data(cur)
    targets = write_targets(cur)
    conn.close()
    results = []
    for i, arm in enumerate(x.strip() for x in a.arms.split(",") if x.strip()):
        results.append(mixed_arm(a, pg, basedir, db, arm, a.pgshim_port + 1 + i, data, now,
                                 caps_sql, targets))
    return results


def main():
    a = parse_args()
    if not a.pgshim_bin:
        raise SystemExit("no pgshim binary: build one or pass --pgshim-bin")
    db = a.db or ("cache_s%s" % ("%g" % a.scale).replace(".", "_"))
    pg = proxyctl.PgEnv.from_environment()
    own_pg = None
    if pg is None or not pg.redis_port:
        own_pg = proxyctl.PgEnv(a.pg_port, a.redis_port)
        pg = own_pg.start()
    basedir = tempfile.mkdtemp(prefix="pgshim-cache-bench-")
    os.chmod(basedir, 0o755)
    out = dict(db=db, scale=a.scale, calls=a.calls, seed=a.seed, binary=a.pgshim_bin,
               loadavg=os.getloadavg())
    try:
        nb.ensure_fixture(pg, db, a.scale)
        if not a.skip_hits:
            shim = start_shim(a, a.pgshim_port, pg, basedir, db, "cache",
                              "pgshimbench%s" % uuid.uuid4().hex[:8])
            try:
                out["hits"] = hit_bench(a, pg, shim, db)
            finally:
                shim.stop()
                rep = shim.sanitizer_report()
                if rep:
                    log("sanitizer report:\n" + rep)
                else:
                    shim.cleanup()
        if not a.skip_mixed:
            out["mixed"] = mixed_bench(a, pg, basedir, db)
    finally:
        if own_pg is not None:
            own_pg.stop()
    out["loadavg_end"] = os.getloadavg()

    if "hits" in out:
        print()
        print("Cache hit through pgshim vs the legacy function direct to PostgreSQL, db %s "
              "(scale %g), %d interleaved calls per shape, ms" % (db, a.scale, a.calls))
        print()
        print("psycopg2 = what the application sees (includes decoding the rows in Python, the "
              "same on both sides); wire = raw socket, time to the last byte of ReadyForQuery.")
        print()
        print("| function | caller shape | legacy median / p95 | hit median / p95 "
              "| speedup median (p95) | wire legacy median / p95 | wire hit median / p95 "
              "| wire speedup median (p95) | timed calls that hit | differ |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in out["hits"]:
            if r.get("floor"):
                print("| %s | %s | | | | %.2f / %.2f (direct) | %.2f / %.2f (through pgshim) | | | |"
                      % (r["function"], r["shape"], r["wire_legacy_median"], r["wire_legacy_p95"],
                         r["wire_hit_median"], r["wire_hit_p95"]))
                continue
            print("| %s | %s | %.2f / %.2f | %.2f / %.2f | %.1fx (%.1fx) | %.2f / %.2f "
                  "| %.2f / %.2f | %.1fx (%.1fx) | %d/%d | %d |" % (
                      r["function"], r["shape"].replace("|", "\\|"), r["legacy_median"],
                      r["legacy_p95"], r["hit_median"], r["hit_p95"], r["speedup_median"] or 0,
                      r["speedup_p95"] or 0, r["wire_legacy_median"], r["wire_legacy_p95"],
                      r["wire_hit_median"], r["wire_hit_p95"], r["wire_speedup_median"],
                      r["wire_speedup_p95"], r["hits"], 2 * r["calls"], r["differ"]))
    if "mixed" in out:
        print()
        print("Mixed workload: %d clients, %g%% writes (UPDATE one jobneed or asset row), "
              "Zipf s=%g arguments, %g s measured after %g s warm-up per arm"
              % (a.mixed_clients, a.write_pct, a.zipf, a.mixed_seconds, a.warmup))
        print()
        print("| arm | reads/s | writes | errors | read median ms | read p95 ms | hit rate "
              "| jobs hit rate | assets hit rate | bu hit rate | capabilities hit rate |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

        def pct(x):
            return "-" if x is None else "%.1f%%" % (100 * x)
        for r in out["mixed"]:
            fam = r["family"]
            print("| %s | %.0f | %d | %d | %.2f | %.2f | %s | %s | %s | %s | %s |" % (
                r["arm"], r["reads"] / r["seconds"], r["writes"], r["errors"],
                r["read_median"] or 0, r["read_p95"] or 0, pct(r.get("hit_rate")),
                *[pct(fam.get(f, {}).get("hit_rate")) for f in ("jobs", "assets", "bu",
                                                               "capabilities")]))
    print()
    print("load average at start %.2f, at end %.2f" % (out["loadavg"][0], out["loadavg_end"][0]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
