"""Cache mode (issue 7): legacy calls answered through the Redis result cache, compared with
PostgreSQL's own answers, through real clients, with a real Redis from the harness.

Two pgshim instances of this module share the harness Redis (one key prefix per run): both run
`[intercept] all = off` and `all = cache` for tenant_a and tenant_w. Tests:
  - differential, cold then warm (psycopg2 simple Query; psycopg 3 extended protocol, unnamed
    and prepared statements): every answer equals PostgreSQL's, SHOW INTERCEPTS shows misses on
    the cold pass and hits on the warm one;
  - read-your-writes (guarantee 1): writes to asset, jobneed and bt through pgshim (autocommit
    and explicit transaction, simple and extended protocol) make the next call fresh, also when
    the write goes through one pgshim and the read through the other;
  - Redis stopped mid-run: no client error, answers still equal PostgreSQL's; restarted: hits
    grow again; a garbage value written into a key is a miss and the answer stays correct.

The read-your-writes tests run twice: without the NOTIFY triggers (pgshim bumps the written
tables when the write commits) and with etc/pgshim-notify.sql installed (pgshim waits for its
listener's sync instead, see test_cache_notify.py). Writes that bypass pgshim are covered in
test_cache_notify.py.

Invariants: both proxies are stopped by PID at the end; rows changed by the tests are restored.
"""

import os
import subprocess
import time
import uuid

import psycopg
import psycopg2
import pytest

import conftest
import proxyctl
import test_intercept as ti

pytestmark = pytest.mark.skipif(conftest.is_pgbouncer(), reason="pgshim-only feature")

TENANTS = ("tenant_a", "tenant_w")
PER_FN = int(os.environ.get("PGSHIM_TEST_CACHE_PER_FN", "8"))
ADMIN_DB = "pgshim"


def _redis_cli(pgenv, *args):
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(pgenv.redis_port)] +
                          list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=20)


@pytest.fixture(scope="module")
def cache_pair(pgenv, proxies, tmp_path_factory):
    """Two pgshims in cache mode sharing one Redis (and one key prefix)."""
    if not pgenv.redis_port:
        pytest.skip("the harness runs without Redis")
    ti._load_fixtures(pgenv)
    base = int(os.environ.get("PGSHIM_TEST_CACHE_PORT", str(conftest._base_port() + 12)))
    prefix = "pgshimtest%s" % uuid.uuid4().hex[:8]
    sections = {"intercept": [("all", "off")]}
    for t in TENANTS:
        sections["tenant.%s" % t] = [("all", "cache")]
    sections["redis"] = [("enabled", "1"), ("host", "127.0.0.1"), ("port", str(pgenv.redis_port)),
                         ("key_prefix", prefix), ("timeout_ms", "100"), ("pool_size", "2")]
    procs = []
    try:
        for i in range(2):
            basedir = str(tmp_path_factory.mktemp("cache%d" % i))
            os.chmod(basedir, 0o755)
            p = proxyctl.Proxy("pgshim", proxies.binary, base + i, pgenv.pg_port,
                               pool_mode="session", pool_size=10,
                               extra={"verbose": "1", "caps_query_file": ti.CAPS_FILE,
                                      "admin_users": "postgres"},
                               basedir=basedir, sections=sections,
                               name="pgshim-cache-%d" % (base + i))
            p.start()
            procs.append(p)
        time.sleep(0.3)   # the Redis connections come up
        yield procs
    finally:
        reps = []
        for p in procs:
            p.stop()
            rep = p.sanitizer_report()
            if rep:
                reps.append(rep)
        if reps:
            pytest.fail("sanitizer report:\n" + "\n".join(reps), pytrace=False)


NOTIFY_SQL = os.path.join(proxyctl.REPO, "etc", "pgshim-notify.sql")
UNINSTALL_SQL = os.path.join(proxyctl.REPO, "etc", "pgshim-notify-uninstall.sql")


def _psql_file(pgenv, db, path):
    env = dict(os.environ)
    env.update({"PGHOST": "127.0.0.1", "PGPORT": str(pgenv.pg_port), "PGUSER": "postgres",
                "PGPASSWORD": "postgres"})
    r = subprocess.run(["psql", "-X", "-q", "-d", db, "-f", path], env=env, timeout=60,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr


@pytest.fixture(params=["table-bump", "scoped-triggers"])
def invalidation(request, pgenv):
    """Guarantee 1 both ways: without the NOTIFY triggers pgshim bumps the written tables at
    commit; with etc/pgshim-notify.sql installed it waits for its listener's sync instead."""
    if request.param == "table-bump":
        yield request.param
        return
    for db in TENANTS:
        _psql_file(pgenv, db, NOTIFY_SQL)
    try:
        time.sleep(0.2)   # the listeners see the install (it invalidates every table)
        yield request.param
    finally:
        for db in TENANTS:
            _psql_file(pgenv, db, UNINSTALL_SQL)


def counters(proxy, tenant):
    """(hits, misses) summed over the functions of tenant, from SHOW INTERCEPTS."""
    conn = psycopg2.connect(proxy.dsn(ADMIN_DB))
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SHOW INTERCEPTS %s" % tenant)
    cols = [d.name for d in cur.description]
    rows = cur.fetchall()
    conn.close()
    hi, mi = cols.index("cache_hits"), cols.index("cache_misses")
    return sum(int(r[hi]) for r in rows), sum(int(r[mi]) for r in rows)


def _differential(direct_run, via_run, cases):
    diffs = []
    for fn, sql, params in cases:
        a = direct_run(fn, sql, params)
        b = via_run(fn, sql, params)
        if a != b and fn in ti.TIME_DEPENDENT:
            a = direct_run(fn, sql, params)
            b = via_run(fn, sql, params)
        if a != b:
            diffs.append((fn, sql, params, ti.describe_diff(a, b)))
    return diffs


@pytest.mark.parametrize("db", TENANTS)
def test_cold_warm_psycopg2(cache_pair, pgenv, db):
    p = cache_pair[0]
    cases = ti.make_cases(pgenv, db, per_fn=PER_FN, seed=21)
    direct = psycopg2.connect(pgenv.dsn(db))
    direct.autocommit = True
    via = psycopg2.connect(p.dsn(db))
    via.autocommit = True
    h0, m0 = counters(p, db)
    cold = _differential(lambda *c: ti.run_pg2(direct, *c), lambda *c: ti.run_pg2(via, *c), cases)
    h1, m1 = counters(p, db)
    warm = _differential(lambda *c: ti.run_pg2(direct, *c), lambda *c: ti.run_pg2(via, *c), cases)
    h2, m2 = counters(p, db)
    direct.close()
    via.close()
    assert not cold, "cold: %d differences, first: %r" % (len(cold), cold[0])
    assert not warm, "warm: %d differences, first: %r" % (len(warm), warm[0])
    assert m1 - m0 >= len(set((c[1], repr(c[2])) for c in cases)) * 0.5, (h0, m0, h1, m1)
    assert h2 - h1 >= len(cases) * 0.7, "warm pass: %d hits for %d calls" % (h2 - h1, len(cases))


@pytest.mark.parametrize("prepare_threshold", [None, 5], ids=["unnamed", "default"])
@pytest.mark.parametrize("db", TENANTS)
def test_cold_warm_psycopg3(cache_pair, pgenv, db, prepare_threshold):
    p = cache_pair[1]
    cases = ti.make_cases(pgenv, db, per_fn=PER_FN, seed=23)
    direct, dn = ti.pg3_connect(pgenv.dsn(db), prepare_threshold)
    via, vn = ti.pg3_connect(p.dsn(db), prepare_threshold)
    h0, _ = counters(p, db)
    for _ in range(2):
        diffs = _differential(lambda *c: ti.run_pg3(direct, *c, dn),
                              lambda *c: ti.run_pg3(via, *c, vn), cases)
        assert not diffs, "%d differences, first: %r" % (len(diffs), diffs[0])
    h1, _ = counters(p, db)
    direct.close()
    via.close()
    assert h1 - h0 >= len(cases) * 0.5, "%d hits for %d calls x2" % (h1 - h0, len(cases))


# ---------------------------------------------------------------------------------------------
# Guarantee 1: read-your-writes through pgshim
# ---------------------------------------------------------------------------------------------

ASSET_SQL = "select * from fn_getassetdetails(%s, %s)"


def _asset_case(pgenv):
    conn = psycopg2.connect(pgenv.dsn("tenant_a"))
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("select bu_id, min(id) from asset where bu_id is not null group by 1"
                " order by count(*) desc limit 1")
    site, aid = cur.fetchone()
    cur.execute("select assetname from asset where id = %s", (aid,))
    name = cur.fetchone()[0]
    conn.close()
    return site, aid, name


def _read(conn, sql, params):
    return ti.run_pg2(conn, "fn_getassetdetails", sql, params)


WRITE_STYLES = ["simple-autocommit", "simple-txn", "extended-autocommit", "extended-txn"]


def _write(proxy, db, style, sql, params):
    if style.startswith("simple"):
        conn = psycopg2.connect(proxy.dsn(db))
        conn.autocommit = style.endswith("autocommit")
        with conn.cursor() as cur:
            cur.execute(sql, params)
        if not conn.autocommit:
            conn.commit()
        conn.close()
    else:
        with psycopg.connect(proxy.dsn(db), autocommit=style.endswith("autocommit")) as conn:
            conn.execute(sql, params)
            if not conn.autocommit:
                conn.commit()


@pytest.mark.parametrize("style", WRITE_STYLES)
@pytest.mark.parametrize("cross", [False, True], ids=["same", "other-pgshim"])
def test_asset_write_is_seen(cache_pair, pgenv, invalidation, style, cross):
    writer, reader = cache_pair[0], cache_pair[1 if cross else 0]
    site, aid, name = _asset_case(pgenv)
    params = ("2000-01-01T00:00:00+00:00", site)
    direct = psycopg2.connect(pgenv.dsn("tenant_a"))
    direct.autocommit = True
    via = psycopg2.connect(reader.dsn("tenant_a"))
    via.autocommit = True
    try:
        for _ in range(2):                       # warm
            assert _read(via, ASSET_SQL, params) == _read(direct, ASSET_SQL, params)
        h0, _ = counters(reader, "tenant_a")
        assert _read(via, ASSET_SQL, params) == _read(direct, ASSET_SQL, params)
        assert counters(reader, "tenant_a")[0] > h0, "the warm call was not a hit"
        syncs = writer.log_text().count("waiting for the listener's sync")
        _write(writer, "tenant_a", style, "update asset set assetname = %s where id = %s",
               ("changed %s %s" % (style, uuid.uuid4().hex[:6]), aid))
        a, b = _read(direct, ASSET_SQL, params), _read(via, ASSET_SQL, params)
        assert a == b, "stale after %s write: %s" % (style, ti.describe_diff(a, b))
        if invalidation == "scoped-triggers":
            assert writer.log_text().count("waiting for the listener's sync") > syncs, \
                "the commit did not wait for the listener's sync"
    finally:
        _write(writer, "tenant_a", "simple-autocommit",
               "update asset set assetname = %s where id = %s", (name, aid))
        direct.close()
        via.close()


@pytest.mark.parametrize("style", ["simple-autocommit", "extended-txn"])
def test_jobneed_write_is_seen(cache_pair, pgenv, invalidation, style):
    p0, p1 = cache_pair
    conn = psycopg2.connect(pgenv.dsn("tenant_a"))
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("select people_id, bu_id, client_id from jobneed"
                " where plandatetime > now() - interval '1 day' and people_id is not null"
                " order by id limit 1")
    row = cur.fetchone()
    if row is None:
        pytest.skip("no recent job in the fixture")
    cur.execute("select id, jobdesc from fun_getjobneed(%s, %s, %s) order by id limit 1", row)
    job = cur.fetchone()
    if job is None:
        pytest.skip("fun_getjobneed returns nothing")
    sql = "select * from fun_getjobneed(%s, %s, %s)"
    via = psycopg2.connect(p1.dsn("tenant_a"))
    via.autocommit = True
    run = lambda c: ti.run_pg2(c, "fun_getjobneed", sql, row)  # noqa: E731
    try:
        run(via)
        run(via)
        _write(p0, "tenant_a", style, "update jobneed set jobdesc = %s where id = %s",
               ("job changed %s" % uuid.uuid4().hex[:6], job[0]))
        a, b = run(conn), run(via)
        if a != b:
            a, b = run(conn), run(via)   # a job may cross a time boundary
        assert a == b, ti.describe_diff(a, b)
    finally:
        _write(p0, "tenant_a", "simple-autocommit", "update jobneed set jobdesc = %s where id = %s",
               (job[1], job[0]))
        conn.close()
        via.close()


def test_bt_write_invalidates(cache_pair, pgenv):
    p = cache_pair[0]
    sql = "select fn_menupbt(6, 'text'::text)"
    via = psycopg2.connect(p.dsn("tenant_w"))
    via.autocommit = True
    cur = via.cursor()
    cur.execute(sql)
    cur.execute(sql)
    assert cur.fetchall() == [("2 5 6",)]
    h0, m0 = counters(p, "tenant_w")
    cur.execute(sql)
    h1, m1 = counters(p, "tenant_w")
    assert h1 == h0 + 1
    _write(p, "tenant_w", "extended-autocommit", "update bt set parent_id = parent_id where id = %s",
           (6,))
    cur.execute(sql)
    assert cur.fetchall() == [("2 5 6",)]
    h2, m2 = counters(p, "tenant_w")
    assert m2 == m1 + 1 and h2 == h1, "a bt write must make the next call a miss"
    via.close()


def test_rollback_does_not_break(cache_pair, pgenv):
    p = cache_pair[0]
    site, aid, name = _asset_case(pgenv)
    params = ("2000-01-01T00:00:00+00:00", site)
    direct = psycopg2.connect(pgenv.dsn("tenant_a"))
    direct.autocommit = True
    conn = psycopg2.connect(p.dsn("tenant_a"))
    cur = conn.cursor()
    cur.execute("update asset set assetname = 'rolled back' where id = %s", (aid,))
    conn.rollback()
    conn.autocommit = True
    assert _read(conn, ASSET_SQL, params) == _read(direct, ASSET_SQL, params)
    conn.close()
    direct.close()


# ---------------------------------------------------------------------------------------------
# Failure policy
# ---------------------------------------------------------------------------------------------

def test_garbage_value_is_a_miss(cache_pair, pgenv):
    p = cache_pair[0]
    site, _, _ = _asset_case(pgenv)
    params = ("2001-01-01T00:00:00+00:00", site)
    direct = psycopg2.connect(pgenv.dsn("tenant_a"))
    direct.autocommit = True
    via = psycopg2.connect(p.dsn("tenant_a"))
    via.autocommit = True
    want = _read(direct, ASSET_SQL, params)
    assert _read(via, ASSET_SQL, params) == want
    prefix = [v for k, v in p.sections["redis"] if k == "key_prefix"][0]
    keys = _redis_cli(pgenv, "--scan", "--pattern", "%s:v3:tenant_a:fn_getassetdetails:*" % prefix)
    keys = [k for k in keys.stdout.split() if k]
    assert keys, "no value stored"
    for k in keys:
        assert _redis_cli(pgenv, "set", k, "garbage, not a PGSC value").returncode == 0
    _, m0 = counters(p, "tenant_a")
    assert _read(via, ASSET_SQL, params) == want
    _, m1 = counters(p, "tenant_a")
    assert m1 > m0, "a garbage value must count as a miss"
    assert _read(via, ASSET_SQL, params) == want    # stored again, correctly
    via.close()
    direct.close()


def test_redis_stopped_and_restarted(cache_pair, pgenv):
    if not pgenv.dir:
        pytest.skip("no harness directory to stop Redis in")
    p = cache_pair[0]
    cases = ti.make_cases(pgenv, "tenant_w", per_fn=3, seed=31)
    direct = psycopg2.connect(pgenv.dsn("tenant_w"))
    direct.autocommit = True
    via = psycopg2.connect(p.dsn("tenant_w"))
    via.autocommit = True
    run_d = lambda *c: ti.run_pg2(direct, *c)   # noqa: E731
    run_v = lambda *c: ti.run_pg2(via, *c)      # noqa: E731
    try:
        assert not _differential(run_d, run_v, cases)
        subprocess.run([proxyctl.PGENV, "stop-redis", "--dir", pgenv.dir], check=True,
                       timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        diffs = _differential(run_d, run_v, cases)
        assert not diffs, diffs[0]
        assert time.monotonic() - t0 < 30
        # a write while Redis is down: the tenant bypasses the cache until a bump succeeds
        _write(p, "tenant_w", "simple-autocommit",
               "update bt set parent_id = parent_id where id = %s", (6,))
        assert not _differential(run_d, run_v, cases)
    finally:
        subprocess.run([proxyctl.PGENV, "start-redis", "--dir", pgenv.dir], check=True,
                       timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    h0, _ = counters(p, "tenant_w")
    while True:
        assert not _differential(run_d, run_v, cases)
        h1, _ = counters(p, "tenant_w")
        if h1 > h0:
            break
        assert time.monotonic() < deadline, "the cache was not used again after the restart"
        time.sleep(0.5)
    via.close()
    direct.close()


def test_concurrent_misses_compute_once(cache_pair, pgenv):
    """Single-flight: simultaneous misses of one key in one pgshim run the native call once;
    the others get the leader's answer (logged as answered from the cache)."""
    import threading
    p = cache_pair[0]
    site, _, _ = _asset_case(pgenv)
    # a key nobody asked before: a fresh timestamp
    params = ("2002-01-01T00:00:%02d.%06d+00:00" % (time.time() % 60, os.getpid() % 999999), site)
    direct = psycopg2.connect(pgenv.dsn("tenant_a"))
    direct.autocommit = True
    want = _read(direct, ASSET_SQL, params)
    direct.close()
    n = 6
    conns = []
    for _ in range(n):
        c = psycopg2.connect(p.dsn("tenant_a"))
        c.autocommit = True
        conns.append(c)
    barrier = threading.Barrier(n)
    got = [None] * n

    def worker(i):
        barrier.wait()
        got[i] = _read(conns[i], ASSET_SQL, params)

    since = p.log_size()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in conns:
        c.close()
    assert all(g == want for g in got)
    natively = ti.native_count(p, since)
    print("concurrent misses: %d of %d computed natively" % (natively, n))
    assert natively < n, "every concurrent miss computed natively"


def test_hit_latency_report(cache_pair, pgenv, capsys):
    """Not pass/fail: median latency per function of a cache hit via pgshim vs the legacy
    function direct to PostgreSQL (tenant_a, scale 0.01), printed for the report."""
    p = cache_pair[0]
    cases = ti.make_cases(pgenv, "tenant_a", per_fn=4, seed=41)
    direct = psycopg2.connect(pgenv.dsn("tenant_a"))
    direct.autocommit = True
    via = psycopg2.connect(p.dsn("tenant_a"))
    via.autocommit = True
    res = {}
    for fn, sql, params in cases:
        ti.run_pg2(via, fn, sql, params)           # warm
        for conn, kind in ((direct, "legacy"), (via, "hit")):
            cur = conn.cursor()
            for _ in range(5):
                t0 = time.perf_counter()
                try:
                    cur.execute(sql, params)
                    cur.fetchall()
                except psycopg2.Error:
                    pass
                res.setdefault((fn, kind), []).append(time.perf_counter() - t0)
    direct.close()
    via.close()
    with capsys.disabled():
        print()
        for fn in sorted({k[0] for k in res}):
            h, l = ti._median(res[(fn, "hit")]), ti._median(res[(fn, "legacy")])
            print("%-28s hit %7.3f ms  legacy %7.3f ms  x%.1f" % (fn, h * 1e3, l * 1e3,
                                                                  l / h if h else 0))


def test_prepared_write_is_seen(cache_pair, pgenv, invalidation):
    """psycopg 3 prepares a statement after 5 executions: later executions are Bind/Execute of
    the named statement without a Parse, and must invalidate like the first ones."""
    p = cache_pair[0]
    site, aid, name = _asset_case(pgenv)
    params = ("2000-01-01T00:00:00+00:00", site)
    direct = psycopg2.connect(pgenv.dsn("tenant_a"))
    direct.autocommit = True
    via = psycopg2.connect(p.dsn("tenant_a"))
    via.autocommit = True
    w = psycopg.connect(p.dsn("tenant_a"), autocommit=True)
    w.prepare_threshold = 2
    try:
        for i in range(7):
            w.execute("update asset set assetname = %s where id = %s", ("prepared %d" % i, aid))
            a, b = _read(direct, ASSET_SQL, params), _read(via, ASSET_SQL, params)
            assert a == b, "execution %d: %s" % (i, ti.describe_diff(a, b))
            assert _read(via, ASSET_SQL, params) == a
    finally:
        w.execute("update asset set assetname = %s where id = %s", (name, aid))
        w.close()
        direct.close()
        via.close()
