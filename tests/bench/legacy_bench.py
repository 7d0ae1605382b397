#!/usr/bin/python3
"""legacy_bench.py: baseline latency of the legacy functions, per function and caller shape.

    tests/bench/legacy --db NAME [--calls 200] [--seed 1] [--only SUBSTR] [--json FILE] [--markdown]

For every legacy function and every shape of SQL the legacy callers send (spec section 3,
"Callers (exact SQL)"), runs --calls calls with random realistic arguments drawn from the fixture
database (tests/fixture/load --scale S), and prints the median and p95 wall latency (execute +
fetch all rows, psycopg2 client-side binding as Django/get_db_rows do, session TimeZone UTC) and
the number of rows returned. This is the baseline pgshim's native answers must beat.

Server from the libpq environment (PGHOST, PGPORT, ...). Invariants: arguments depend only on
--seed and the data; each shape gets 5 unmeasured warm-up calls; calls of one shape run
back-to-back on one connection.
"""

import argparse
import datetime
import json
import random
import statistics
import sys
import time

import psycopg2

UTC = datetime.timezone.utc


def percentile(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Data:
    """Realistic argument pools read from the fixture database."""

    def __init__(self, cur):
        def col(sql):
            cur.execute(sql)
            return cur.fetchall()
        self.clients = [r[0] for r in col(
            "SELECT b.id FROM bt b JOIN typeassist t ON t.id = b.identifier_id "
            "WHERE t.tacode = 'CLIENT' AND b.parent_id = 1 ORDER BY b.id")]
        self.bts = [r[0] for r in col("SELECT id FROM bt WHERE id > 1 ORDER BY id")]
        self.legacy_bts = [r[0] for r in col(
            "SELECT unnest(string_to_array(fn_mendownbt(-1, 'text'::text), ' ')::bigint[])")]
        self.legacy_roots = [r[0] for r in col("SELECT id FROM bt WHERE parent_id = -1 ORDER BY id")] or [-1]
        self.sites = col("SELECT DISTINCT bu_id, client_id FROM asset WHERE id > 1 ORDER BY 1")
        self.people = col("SELECT id, bu_id, client_id FROM people WHERE id > 1 AND NOT isadmin ORDER BY id")
        self.admins = col("SELECT id, client_id FROM people WHERE id > 1 AND isadmin ORDER BY id")
        self.assets = col("SELECT id, bu_id FROM asset WHERE id > 1 ORDER BY id")
        # adhoc: existing open-ish scheduled jobneeds with an asset and qset
        self.adhoc = col(
            "SELECT plandatetime, expirydatetime, bu_id, people_id, pgroup_id, asset_id, qset_id "
            "FROM jobneed WHERE id > 1 AND asset_id > 1 AND qset_id > 1 AND plandatetime IS NOT NULL "
            "AND expirydatetime IS NOT NULL AND id % 97 = 0 ORDER BY id LIMIT 5000")
        cur.execute("SELECT pb.people_id, pb.pgroup_id FROM pgbelonging pb WHERE pb.people_id > 1")
        self.members = {}
        for p, g in cur.fetchall():
            self.members.setdefault(g, []).append(p)


def shapes(d, rng, now):
    """(function, shape label, SQL template, inline?, argument generator)."""
    def client():
        return rng.choice(d.clients)

    def person():
        return rng.choice(d.people)

    def mdtz_recent():
        # as utils.getawaredatetime gives it: wall time at the client's offset, seconds precision
        t = now - datetime.timedelta(days=30)
        return t.replace(microsecond=0).astimezone(datetime.timezone(datetime.timedelta(minutes=330)))

    def bt_any():
        x = rng.random()
        if x < 0.1:
            return -1
        if x < 0.2:
            return rng.choice(d.legacy_bts)
        return rng.choice(d.bts)

    def adhoc_args():
        plan, exp, bu, people, pgroup, asset, qset = rng.choice(d.adhoc)
        if people == 1:
            people = rng.choice(d.members.get(pgroup, [2]))
        at = plan + (exp - plan) * rng.random()
        return (at, bu, people, asset, qset)

    return [
        ('fn_get_bulist', 'get_all_bu_of_client: (client, false, true, array) inlined',
         "select fn_get_bulist({0}, false, true, 'array'::text, null::bigint[]) as id;", True,
         lambda: (client(),)),
        ('fn_get_bulist', 'get_whole_tree: (client, true, true, array) inlined',
         "select fn_get_bulist({0}, true, true, 'array'::text, null::bigint[]) as id;", True,
         lambda: (client(),)),
        ('fn_get_bulist', "load_parent_choices/get_bus_based_on_idf: (%s any BU as '5' or -1)",
         "select fn_get_bulist(%s, true, true, 'array'::text, null::bigint[]) as buids", False,
         lambda: (str(bt_any()),)),
        ('fn_get_bulist', "fn_get_siteslist_web admin: (client, true, true, 'Text', null::text)",
         "select * from fn_get_bulist(%s, true, true, 'Text', null::text)", False,
         lambda: (client(),)),
        ('fn_get_siteslist_web', 'select fn_get_siteslist_web(%s, %s), admin people',
         'select fn_get_siteslist_web(%s, %s)', False,
         lambda: tuple(reversed(rng.choice(d.admins))) if d.admins else (client(), 1)),
        ('fn_getbulist_basedon_idnf', 'SELECT fn_getbulist_basedon_idnf(%s, %s, %s), Django-era client (gives \'\')',
         'SELECT fn_getbulist_basedon_idnf(%s, %s, %s)', False,
         lambda: (client(), rng.random() < 0.7, rng.random() < 0.7)),
        ('fn_getbulist_basedon_idnf', 'SELECT fn_getbulist_basedon_idnf(%s, %s, %s), legacy BU under -1',
         'SELECT fn_getbulist_basedon_idnf(%s, %s, %s)', False,
         lambda: (rng.choice(d.legacy_roots) if rng.random() < 0.7 else rng.choice(d.legacy_bts),
                  rng.random() < 0.7, rng.random() < 0.7)),
        ('fn_getassetvsquestionset', "SELECT fn_getassetvsquestionset(%s, %s, %s) ids/name",
         'SELECT fn_getassetvsquestionset(%s, %s, %s)', False,
         lambda: (lambda a: (a[1], str(a[0]), rng.choice(['', 'name'])))(rng.choice(d.assets))),
        ('fn_getassetdetails', 'select * from fn_getassetdetails(%s, %s), mdtz = now-30d',
         'select * from fn_getassetdetails(%s, %s)', False,
         lambda: (mdtz_recent(), rng.choice(d.sites)[0])),
        ('fn_getassetdetails', 'select * from fn_getassetdetails(%s, %s), full sync (1970)',
         'select * from fn_getassetdetails(%s, %s)', False,
         lambda: (datetime.datetime(1970, 1, 1, tzinfo=UTC), rng.choice(d.sites)[0])),
        ('fun_getjobneed', 'select * from fun_getjobneed(%s, %s, %s) (person, own site, client)',
         'select * from fun_getjobneed(%s, %s, %s)', False,
         lambda: person()),
        ('fun_getexttourjobneed', 'select * from fun_getexttourjobneed(%s, %s, %s)',
         'select * from fun_getexttourjobneed(%s, %s, %s)', False,
         lambda: person()),
        ('fn_get_schedule_for_adhoc', 'select * from fn_get_schedule_for_adhoc(%s, %s, %s, %s, %s)',
         'select * from fn_get_schedule_for_adhoc(%s, %s, %s, %s, %s)', False,
         adhoc_args),
        ('capability query', 'Capability.objects.raw(get_web_caps_for_client)',
         None, False, lambda: ()),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--db', required=True)
    ap.add_argument('--calls', type=int, default=200)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--only', help='run only shapes whose function or label contains this')
    ap.add_argument('--json', help='also write results to this file')
    ap.add_argument('--markdown', action='store_true', help='print a markdown table')
    ap.add_argument('--caps-sql', default=None, help='capability query file (default: tests/fixture/caps_query.sql)')
    a = ap.parse_args()

    import os
    caps_path = a.caps_sql or os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixture',
                                           'caps_query.sql')
    with open(caps_path) as f:
        caps_sql = f.read()

    conn = psycopg2.connect(dbname=a.db)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SET TimeZone = 'UTC'")
    cur.execute('SELECT now()')
    now = cur.fetchone()[0]
    d = Data(cur)
    rng = random.Random(a.seed)
    results = []
    for fn, label, sql, inline, gen in shapes(d, rng, now):
        if a.only and a.only not in fn and a.only not in label:
            continue
        if sql is None:
            sql = caps_sql
        lat, nrows = [], []
        for k in range(a.calls + 5):
            args = gen()
            if inline:
                q, params = sql.format(*args), None
            else:
                q, params = sql, (args if args else None)
            t0 = time.perf_counter()
            cur.execute(q, params)
            r = cur.fetchall()
            dt = time.perf_counter() - t0
            if k >= 5:
                lat.append(dt * 1000.0)
                nrows.append(len(r) if (fn.startswith('fun_') or fn in ('fn_getassetdetails', 'capability query',
                                                                         'fn_get_siteslist_web', 'fn_get_schedule_for_adhoc'))
                             else _payload_size(r))
        res = dict(function=fn, shape=label, calls=len(lat), median_ms=statistics.median(lat),
                   p95_ms=percentile(lat, 0.95), rows_median=statistics.median(nrows),
                   rows_min=min(nrows), rows_max=max(nrows))
        results.append(res)
        print('%-26s %8.2f %8.2f   %-12s %s' % (fn, res['median_ms'], res['p95_ms'],
                                               '%g (%d-%d)' % (res['rows_median'], res['rows_min'], res['rows_max']),
                                               label), file=sys.stderr, flush=True)
    conn.close()

    print()
    if a.markdown:
        print('| function | caller shape | calls | median ms | p95 ms | rows / ids: median (min-max) |')
        print('| --- | --- | ---: | ---: | ---: | --- |')
        for r in results:
            print('| %s | %s | %d | %.2f | %.2f | %g (%d-%d) |' % (
                r['function'], r['shape'].replace('|', '\\|'), r['calls'], r['median_ms'], r['p95_ms'],
                r['rows_median'], r['rows_min'], r['rows_max']))
    else:
        print('%-26s %6s %9s %9s  %-18s %s' % ('function', 'calls', 'median_ms', 'p95_ms', 'rows med(min-max)', 'shape'))
        for r in results:
            print('%-26s %6d %9.2f %9.2f  %-18s %s' % (
                r['function'], r['calls'], r['median_ms'], r['p95_ms'],
                '%g (%d-%d)' % (r['rows_median'], r['rows_min'], r['rows_max']), r['shape']))
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(dict(db=a.db, calls=a.calls, seed=a.seed, results=results), f, indent=1)


def _payload_size(rows):
    """For scalar-returning calls: number of ids in the single value (rows for SETOF results)."""
    if len(rows) != 1:
        return len(rows)
    v = rows[0][0]
    if v is None:
        return 0
    if isinstance(v, list):
        return len(v)
    if isinstance(v, str):
        return len(v.split(' ')) if v.strip() else 0
    return 1


if __name__ == '__main__':
    main()
