"""Cache mode, writes that bypass pgshim (issue 7, guarantees 2 and 3), with a real PostgreSQL,
Redis and pgshim.

Two pgshims in cache mode for tenant_a and tenant_w share the harness Redis (one key prefix per
run); etc/pgshim-notify.sql is installed in both tenant databases for the module and removed at
its end. Tests:
  (a) a write straight to PostgreSQL (not through pgshim) that changes a cached answer: within
      1 s of its commit pgshim answers like PostgreSQL again (the measured latency is printed),
      for one function-table pair of each family: assets/asset, jobs/jobneed, bu/bt,
      capabilities/capability; the answer was a cache hit right before the write;
  (b) DELETE (capability) and TRUNCATE (pgbelonging, read by fun_getjobneed): the same bound;
  (c) without the triggers (uninstalled from tenant_w, a third pgshim with ttl 2 s): the stale
      answer is served, and the fresh one once the TTL expired: the documented bound;
  (d) the LISTEN connections terminated (pg_terminate_backend) in the very transaction that
      writes, so its notification reaches nobody: no client error, and within 1 s the answer is
      fresh (the reconnect bumps every table before the cache is trusted again); afterwards a
      notification works again;
  (e) guarantee 3: a native computation blocked by a lock on one table the function reads while
      a write to another table it reads commits through the other pgshim: the answer equals
      PostgreSQL's, nothing is stored for it (the next call is a miss, not a hit), and the call
      after that is a hit again.

Scoped invalidation (the triggers report the sites, clients and people of the changed rows):
  (f) a write through pgshim to a job of site X: the next call for X is fresh (equal to
      PostgreSQL) and a cached call for site Y is still a hit; the commit waited for the
      listener's sync, not a table-level bump;
  (g) the same for a direct write, within 1 s;
  (h) an UPDATE moving a job from site X to site Y makes both answers fresh;
  (i) DDL through pgshim (ALTER TABLE jobneed ADD COLUMN) still invalidates the whole table;
  (j) guarantee 1 across pgshims: written through one, read through the other right after the
      COMMIT returned: fresh, and site Y still a hit there;
  (k) the listener killed inside the writing transaction through pgshim: the commit falls back
      to a table-level bump, and the next call is still fresh;
  (l) four clients of one pgshim commit row writes at once (their syncs share round trips):
      each reads its own write right after its COMMIT returned.

Invariants: every pgshim is stopped by PID at the end; rows changed by the tests are restored;
the triggers are removed from both databases at the end.
"""

import os
import subprocess
import threading
import time
import uuid

import psycopg2
import pytest

import conftest
import proxyctl
import test_intercept as ti

pytestmark = pytest.mark.skipif(conftest.is_pgbouncer(), reason="pgshim-only feature")

TENANTS = ("tenant_a", "tenant_w")
ADMIN_DB = "pgshim"
NOTIFY_SQL = os.path.join(proxyctl.REPO, "etc", "pgshim-notify.sql")
UNINSTALL_SQL = os.path.join(proxyctl.REPO, "etc", "pgshim-notify-uninstall.sql")
BOUND_S = 1.0          # guarantee 2: fresh within one second of the commit
POLL_S = 0.005


def _psql_file(pgenv, db, path):
    env = dict(os.environ)
    env.update({"PGHOST": "127.0.0.1", "PGPORT": str(pgenv.pg_port), "PGUSER": "postgres",
                "PGPASSWORD": "postgres"})
    r = subprocess.run(["psql", "-X", "-q", "-d", db, "-f", path], env=env, timeout=60,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr


def _triggers(pgenv, db):
    conn = _direct(pgenv, db)
    cur = conn.cursor()
    cur.execute("select distinct tgrelid::regclass::text from pg_trigger"
                " where tgname like 'pgshim\\_notify%%'")
    got = sorted(r[0] for r in cur.fetchall())
    conn.close()
    return got


def _direct(pgenv, db):
    conn = psycopg2.connect(pgenv.dsn(db))
    conn.autocommit = True
    return conn


def _start(pgenv, proxies, tmp_path_factory, port, prefix, tenants_sections, name,
           redis_extra=()):
    basedir = str(tmp_path_factory.mktemp(name))
    os.chmod(basedir, 0o755)
    sections = {"intercept": [("all", "off")]}
    sections.update(tenants_sections)
    sections["redis"] = [("enabled", "1"), ("host", "127.0.0.1"),
                         ("port", str(pgenv.redis_port)), ("key_prefix", prefix),
                         ("timeout_ms", "100"), ("pool_size", "2")] + list(redis_extra)
    p = proxyctl.Proxy("pgshim", proxies.binary, port, pgenv.pg_port,
                       pool_mode="session", pool_size=10,
                       extra={"verbose": "1", "caps_query_file": ti.CAPS_FILE,
                              "admin_users": "postgres"},
                       basedir=basedir, sections=sections, name="pgshim-%s-%d" % (name, port))
    p.start()
    return p


def _stop(procs):
    reps = []
    for p in procs:
        p.stop()
        rep = p.sanitizer_report()
        if rep:
            reps.append(rep)
    if reps:
        pytest.fail("sanitizer report:\n" + "\n".join(reps), pytrace=False)


@pytest.fixture(scope="module")
def notify_pair(pgenv, proxies, tmp_path_factory):
    """Two pgshims in cache mode sharing one Redis, with the NOTIFY triggers installed."""
    if not pgenv.redis_port:
        pytest.skip("the harness runs without Redis")
    ti._load_fixtures(pgenv)
    base = int(os.environ.get("PGSHIM_TEST_NOTIFY_PORT", str(conftest._base_port() + 20)))
    prefix = "pgshimnotify%s" % uuid.uuid4().hex[:8]
    for db in TENANTS:
        _psql_file(pgenv, db, NOTIFY_SQL)
        assert len(_triggers(pgenv, db)) == 9, _triggers(pgenv, db)
    procs = []
    try:
        for i in range(2):
            procs.append(_start(pgenv, proxies, tmp_path_factory, base + i, prefix,
                                {"tenant.%s" % t: [("all", "cache")] for t in TENANTS},
                                "notify%d" % i))
        yield procs
    finally:
        try:
            _stop(procs)
        finally:
            for db in TENANTS:
                _psql_file(pgenv, db, UNINSTALL_SQL)


def stats(proxy, tenant):
    """{function: {column: int}} from SHOW INTERCEPTS tenant."""
    conn = psycopg2.connect(proxy.dsn(ADMIN_DB))
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SHOW INTERCEPTS %s" % tenant)
    cols = [d.name for d in cur.description]
    out = {}
    for r in cur.fetchall():
        row = dict(zip(cols, r))
        out[row["function"]] = {k: int(row[k]) for k in ("cache_hits", "cache_misses",
                                                         "cache_stores", "cache_errors")}
    conn.close()
    return out


def _warm(proxy, via, db, fn, sql, params, timeout=10.0):
    """Calls until a call of fn is a cache hit (the LISTEN connection must be up and trusted
    first), so a stale answer would be observable. Returns the hit's answer."""
    deadline = time.monotonic() + timeout
    while True:
        h0 = stats(proxy, db).get(fn, {}).get("cache_hits", 0)
        got = ti.run_pg2(via, fn, sql, params)
        if stats(proxy, db).get(fn, {}).get("cache_hits", 0) > h0:
            return got
        assert time.monotonic() < deadline, "%s never became a cache hit" % fn
        time.sleep(0.05)


def _fresh_within(via, direct, fn, sql, params, committed_at, bound):
    """Polls through pgshim until it answers like PostgreSQL; returns the seconds from the
    commit, or fails after `bound` (re-reading PostgreSQL each time: job answers move with
    now())."""
    while True:
        b = ti.run_pg2(via, fn, sql, params)
        a = ti.run_pg2(direct, fn, sql, params)
        el = time.monotonic() - committed_at
        if a == b:
            return el
        assert el <= bound, "%s still differs %.3f s after the commit: %s" % (
            fn, el, ti.describe_diff(a, b))
        time.sleep(POLL_S)


def _report(capsys, what, seconds):
    with capsys.disabled():
        print("\n  %-44s fresh %.1f ms after the commit" % (what, seconds * 1e3))


# ---------------------------------------------------------------------------------------------
# Cases: one function-table pair per family
# ---------------------------------------------------------------------------------------------

ASSET_SQL = "select * from fn_getassetdetails(%s, %s)"
JOB_SQL = "select * from fun_getjobneed(%s, %s, %s)"
BU_SQL = "select fn_menupbt(%s, 'text'::text)"


def _asset_row(pgenv):
    conn = _direct(pgenv, "tenant_a")
    cur = conn.cursor()
    cur.execute("select bu_id, min(id) from asset where bu_id is not null group by 1"
                " order by count(*) desc limit 1")
    site, aid = cur.fetchone()
    cur.execute("select assetname from asset where id = %s", (aid,))
    name = cur.fetchone()[0]
    conn.close()
    return site, aid, name


def _caps_sql():
    with open(ti.CAPS_FILE) as f:
        return f.read()


def _bypass_write(pgenv, db, sql, params=None):
    """Commits sql on a direct connection; returns the monotonic time right after the commit."""
    conn = psycopg2.connect(pgenv.dsn(db))
    cur = conn.cursor()
    cur.execute(sql, params)
    conn.commit()
    t = time.monotonic()
    conn.close()
    return t


def _family_case(pgenv, family):
    """(db, fn, sql, params, write sql, write params, restore sql, restore params)."""
    if family == "assets":
        site, aid, name = _asset_row(pgenv)
        return ("tenant_a", "fn_getassetdetails", ASSET_SQL, ("2000-01-01T00:00:00+00:00", site),
                "update asset set assetname = %s where id = %s",
                ("direct %s" % uuid.uuid4().hex[:8], aid),
                "update asset set assetname = %s where id = %s", (name, aid))
    if family == "jobs":
        conn = _direct(pgenv, "tenant_a")
        cur = conn.cursor()
        cur.execute("select people_id, bu_id, client_id from jobneed"
                    " where plandatetime > now() - interval '1 day' and people_id is not null"
                    " order by id limit 1")
        row = cur.fetchone()
        if row is None:
            pytest.skip("no recent job in the fixture")
        cur.execute("select id, jobdesc from fun_getjobneed(%s, %s, %s) order by id limit 1", row)
        job = cur.fetchone()
        conn.close()
        if job is None:
            pytest.skip("fun_getjobneed returns nothing")
        return ("tenant_a", "fun_getjobneed", JOB_SQL, row,
                "update jobneed set jobdesc = %s where id = %s",
                ("direct %s" % uuid.uuid4().hex[:8], job[0]),
                "update jobneed set jobdesc = %s where id = %s", (job[1], job[0]))
    if family == "bu":
        # worked fixture: 6 -> 5 -> 2 -> 1; re-parent 6 under 2
        return ("tenant_w", "fn_menupbt", BU_SQL, (6,),
                "update bt set parent_id = 2 where id = %s", (6,),
                "update bt set parent_id = 5 where id = %s", (6,))
    if family == "capabilities":
        conn = _direct(pgenv, "tenant_w")
        cur = conn.cursor()
        cur.execute("select capsname from capability where id = 6")
        name = cur.fetchone()[0]
        conn.close()
        return ("tenant_w", "get_web_caps_for_client", _caps_sql(), None,
                "update capability set capsname = %s where id = %s",
                ("direct %s" % uuid.uuid4().hex[:8], 6),
                "update capability set capsname = %s where id = %s", (name, 6))
    raise AssertionError(family)


# ---------------------------------------------------------------------------------------------
# (a) one pair per family
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["assets", "jobs", "bu", "capabilities"])
def test_direct_write_seen_within_a_second(notify_pair, pgenv, family, capsys):
    p = notify_pair[0]
    db, fn, sql, params, wsql, wparams, rsql, rparams = _family_case(pgenv, family)
    direct = _direct(pgenv, db)
    via = psycopg2.connect(p.dsn(db))
    via.autocommit = True
    try:
        before = _warm(p, via, db, fn, sql, params)
        assert before == ti.run_pg2(direct, fn, sql, params)
        t = _bypass_write(pgenv, db, wsql, wparams)
        el = _fresh_within(via, direct, fn, sql, params, t, BOUND_S)
        after = ti.run_pg2(direct, fn, sql, params)
        assert after != before or fn in ti.TIME_DEPENDENT, "the write did not change the answer"
        _report(capsys, "%s (%s, update)" % (fn, family), el)
        # The other pgshim sharing the Redis answers fresh too.
        other = psycopg2.connect(notify_pair[1].dsn(db))
        other.autocommit = True
        assert ti.run_pg2(other, fn, sql, params) == ti.run_pg2(direct, fn, sql, params)
        other.close()
    finally:
        _bypass_write(pgenv, db, rsql, rparams)
        direct.close()
        via.close()


# ---------------------------------------------------------------------------------------------
# (b) DELETE and TRUNCATE
# ---------------------------------------------------------------------------------------------

def test_direct_insert_and_delete(notify_pair, pgenv, capsys):
    p = notify_pair[0]
    fn, sql = "get_web_caps_for_client", _caps_sql()
    code = "NOTIFY_%s" % uuid.uuid4().hex[:8].upper()
    direct = _direct(pgenv, "tenant_w")
    via = psycopg2.connect(p.dsn("tenant_w"))
    via.autocommit = True
    try:
        _warm(p, via, "tenant_w", fn, sql, None)
        t = _bypass_write(pgenv, "tenant_w", "insert into capability (capscode, capsname,"
                          " parent_id, cfor) values (%s, 'notify test', 5, 'WEB')", (code,))
        _report(capsys, "%s (insert)" % fn, _fresh_within(via, direct, fn, sql, None, t, BOUND_S))
        _warm(p, via, "tenant_w", fn, sql, None)
        t = _bypass_write(pgenv, "tenant_w", "delete from capability where capscode = %s", (code,))
        _report(capsys, "%s (delete)" % fn, _fresh_within(via, direct, fn, sql, None, t, BOUND_S))
    finally:
        _bypass_write(pgenv, "tenant_w", "delete from capability where capscode = %s", (code,))
        direct.close()
        via.close()


def test_direct_truncate(notify_pair, pgenv, capsys):
    p = notify_pair[0]
    fn = "fun_getjobneed"
    direct = _direct(pgenv, "tenant_a")
    cur = direct.cursor()
    cur.execute("select pb.people_id, jn.bu_id, jn.client_id, count(*) from jobneed jn"
                " join pgbelonging pb on pb.pgroup_id = jn.pgroup_id where jn.pgroup_id <> 1"
                " group by 1, 2, 3 order by 4 desc limit 1")
    row = cur.fetchone()
    if row is None:
        pytest.skip("no group job in the fixture")
    params = row[:3]
    save = "pgshim_notify_save_%s" % uuid.uuid4().hex[:8]
    cur.execute("create table %s as select * from pgbelonging" % save)
    via = psycopg2.connect(p.dsn("tenant_a"))
    via.autocommit = True
    try:
        before = _warm(p, via, "tenant_a", fn, JOB_SQL, params)
        t = _bypass_write(pgenv, "tenant_a", "truncate pgbelonging")
        el = _fresh_within(via, direct, fn, JOB_SQL, params, t, BOUND_S)
        assert ti.run_pg2(direct, fn, JOB_SQL, params) != before, "truncate changed nothing"
        _report(capsys, "%s (truncate pgbelonging)" % fn, el)
    finally:
        cur.execute("begin; truncate pgbelonging;"
                    " insert into pgbelonging overriding system value select * from %s;"
                    " drop table %s; commit" % (save, save))
        direct.close()
        via.close()


# ---------------------------------------------------------------------------------------------
# (c) without the triggers: bounded by the TTL
# ---------------------------------------------------------------------------------------------

def test_without_triggers_stale_until_ttl(notify_pair, pgenv, proxies, tmp_path_factory, capsys):
    ttl = 2
    port = int(os.environ.get("PGSHIM_TEST_NOTIFY_PORT", str(conftest._base_port() + 20))) + 2
    _psql_file(pgenv, "tenant_w", UNINSTALL_SQL)
    p = None
    direct = _direct(pgenv, "tenant_w")
    via = None
    try:
        assert _triggers(pgenv, "tenant_w") == []
        p = _start(pgenv, proxies, tmp_path_factory, port, "pgshimttl%s" % uuid.uuid4().hex[:8],
                   {"tenant.tenant_w": [("all", "cache"), ("ttl.all", str(ttl))]}, "notifyttl")
        via = psycopg2.connect(p.dsn("tenant_w"))
        via.autocommit = True
        fn = "fn_menupbt"
        before = _warm(p, via, "tenant_w", fn, BU_SQL, (6,))
        assert before == ti.run_pg2(direct, fn, BU_SQL, (6,))
        t = _bypass_write(pgenv, "tenant_w", "update bt set parent_id = 2 where id = 6")
        stale = ti.run_pg2(via, fn, BU_SQL, (6,))
        fresh = ti.run_pg2(direct, fn, BU_SQL, (6,))
        assert fresh != before
        assert stale == before, "served fresh at once without triggers: the test proves nothing"
        el = _fresh_within(via, direct, fn, BU_SQL, (6,), t, ttl + 1.5)
        _report(capsys, "%s without triggers, ttl %d s" % (fn, ttl), el)
    finally:
        _bypass_write(pgenv, "tenant_w", "update bt set parent_id = 5 where id = 6")
        if via is not None:
            via.close()
        direct.close()
        try:
            if p is not None:
                _stop([p])
        finally:
            _psql_file(pgenv, "tenant_w", NOTIFY_SQL)


# ---------------------------------------------------------------------------------------------
# (d) the LISTEN connection killed
# ---------------------------------------------------------------------------------------------

def _listeners(conn, db):
    cur = conn.cursor()
    cur.execute("select pid from pg_stat_activity where application_name = 'pgshim-notify'"
                " and datname = %s order by pid", (db,))
    return [r[0] for r in cur.fetchall()]


def test_listen_connection_killed(notify_pair, pgenv, capsys):
    p = notify_pair[0]
    fn = "fn_getassetdetails"
    site, aid, name = _asset_row(pgenv)
    params = ("2000-01-01T00:00:00+00:00", site)
    direct = _direct(pgenv, "tenant_a")
    via = psycopg2.connect(p.dsn("tenant_a"))
    via.autocommit = True
    try:
        _warm(p, via, "tenant_a", fn, ASSET_SQL, params)
        old = _listeners(direct, "tenant_a")
        assert len(old) >= 1, "no LISTEN connection for tenant_a"
        # The listeners die inside the writing transaction (waiting up to 5 s for them to be
        # gone), so its notification is sent to nobody: only the bump after the reconnect can
        # make the answer fresh.
        conn = psycopg2.connect(pgenv.dsn("tenant_a"))
        cur = conn.cursor()
        cur.execute("update asset set assetname = %s where id = %s",
                    ("killed %s" % uuid.uuid4().hex[:8], aid))
        cur.execute("select bool_and(pg_terminate_backend(pid, 5000)) from pg_stat_activity"
                    " where application_name = 'pgshim-notify' and datname = 'tenant_a'")
        assert cur.fetchone()[0] is True
        conn.commit()
        t = time.monotonic()
        conn.close()
        el = _fresh_within(via, direct, fn, ASSET_SQL, params, t, BOUND_S)
        _report(capsys, "%s, write while LISTEN was killed" % fn, el)
        # Reconnected (new backends), and notifications work again.
        deadline = time.monotonic() + 10
        while True:
            new = _listeners(direct, "tenant_a")
            if len(new) == len(old) and not set(new) & set(old):
                break
            assert time.monotonic() < deadline, "LISTEN not reconnected: %r -> %r" % (old, new)
            time.sleep(0.05)
        _warm(p, via, "tenant_a", fn, ASSET_SQL, params)
        t = _bypass_write(pgenv, "tenant_a", "update asset set assetname = %s where id = %s",
                          ("after %s" % uuid.uuid4().hex[:8], aid))
        el = _fresh_within(via, direct, fn, ASSET_SQL, params, t, BOUND_S)
        _report(capsys, "%s, after the reconnect" % fn, el)
        assert "LISTEN connection closed" in p.log_text()
    finally:
        _bypass_write(pgenv, "tenant_a", "update asset set assetname = %s where id = %s",
                      (name, aid))
        direct.close()
        via.close()


# ---------------------------------------------------------------------------------------------
# (e) guarantee 3: a result computed across a write is never stored as current
# ---------------------------------------------------------------------------------------------

def test_result_computed_across_a_write_is_not_stored(notify_pair, pgenv):
    p, writer = notify_pair
    fn = "fn_getassetdetails"   # reads asset, questionset and bt
    site, aid, name = _asset_row(pgenv)
    # a key nobody asked before, still answering every asset of the site
    params = ("2000-01-01T00:00:%02d.%06d+00:00" % (time.time() % 60, os.getpid() % 999999), site)
    direct = _direct(pgenv, "tenant_a")
    via = psycopg2.connect(p.dsn("tenant_a"))
    via.autocommit = True
    lock = psycopg2.connect(pgenv.dsn("tenant_a"))
    wconn = psycopg2.connect(writer.dsn("tenant_a"))
    wconn.autocommit = True
    try:
        _warm(p, via, "tenant_a", fn, ASSET_SQL, ("2000-01-01T00:00:00+00:00", site))
        s0 = stats(p, "tenant_a")[fn]
        lcur = lock.cursor()
        lcur.execute("lock table questionset in access exclusive mode")
        got = {}

        def call():
            got["answer"] = ti.run_pg2(via, fn, ASSET_SQL, params)

        th = threading.Thread(target=call)
        th.start()
        # The native computation (a miss) is waiting for the lock.
        deadline = time.monotonic() + 4
        while True:
            cur = direct.cursor()
            cur.execute("select count(*) from pg_stat_activity where application_name ="
                        " 'pgshim-native' and datname = 'tenant_a' and wait_event_type = 'Lock'")
            if cur.fetchone()[0] > 0:
                break
            assert time.monotonic() < deadline, "the native computation never waited"
            time.sleep(0.02)
        s1 = stats(p, "tenant_a")[fn]
        assert s1["cache_misses"] == s0["cache_misses"] + 1, (s0, s1)
        # Meanwhile a write to another table the function reads commits through the other
        # pgshim (which bumps the generation before its commit's ReadyForQuery).
        wconn.cursor().execute("update asset set assetname = %s where id = %s",
                               ("across %s" % uuid.uuid4().hex[:8], aid))
        lock.commit()
        th.join(30)
        assert not th.is_alive()
        want = ti.run_pg2(direct, fn, ASSET_SQL, params)
        assert got["answer"] == want, ti.describe_diff(want, got["answer"])
        # Nothing was stored for the new generations: the next call misses and computes.
        s2 = stats(p, "tenant_a")[fn]
        assert ti.run_pg2(via, fn, ASSET_SQL, params) == want
        s3 = stats(p, "tenant_a")[fn]
        assert s3["cache_hits"] == s2["cache_hits"], "the result computed across the write was" \
            " stored as current (%r -> %r)" % (s2, s3)
        assert s3["cache_misses"] == s2["cache_misses"] + 1, (s2, s3)
        # ... and stores its fresh answer, which the following call hits.
        assert ti.run_pg2(via, fn, ASSET_SQL, params) == want
        s4 = stats(p, "tenant_a")[fn]
        assert s4["cache_hits"] == s3["cache_hits"] + 1, (s3, s4)
    finally:
        lock.rollback()
        lock.close()
        wconn.cursor().execute("update asset set assetname = %s where id = %s", (name, aid))
        wconn.close()
        direct.close()
        via.close()


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lines,ok", [
    (["notify = off", "notify_channel = my_channel"], True),
    (["notify = on", "notify_channel = \"odd\"\"name\""], True),
    (["notify = maybe"], False),
    (["notify_channel ="], False),
    (["notify_channel = %s" % ("x" * 64)], False),
], ids=["off-channel", "quoted-channel", "bad-bool", "empty-channel", "long-channel"])
def test_notify_options(proxies, tmp_path, lines, ok):
    with open(os.path.join(proxyctl.REPO, "etc", "pgshim.ini")) as f:
        text = f.read()
    ini = tmp_path / "pgshim.ini"
    ini.write_text(text + "\n[redis]\nenabled = 0\n" + "\n".join(lines) + "\n")
    r = subprocess.run([proxies.binary, "--check-config", str(ini)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert (r.returncode == 0) == ok, r.stdout + r.stderr
    if not ok:
        assert "[redis]" in r.stdout + r.stderr


def test_notify_off_opens_no_listen(notify_pair, pgenv, proxies, tmp_path_factory):
    """notify = off: no LISTEN connection, and the cache is used at once (nothing to wait
    for), with writes that bypass pgshim bounded by the TTL only."""
    port = int(os.environ.get("PGSHIM_TEST_NOTIFY_PORT", str(conftest._base_port() + 20))) + 3
    direct = _direct(pgenv, "tenant_w")
    before = _listeners(direct, "tenant_w")
    p = _start(pgenv, proxies, tmp_path_factory, port, "pgshimoff%s" % uuid.uuid4().hex[:8],
               {"tenant.tenant_w": [("all", "cache")]}, "notifyoff", [("notify", "off")])
    try:
        via = psycopg2.connect(p.dsn("tenant_w"))
        via.autocommit = True
        fn = "fn_menupbt"
        assert ti.run_pg2(via, fn, BU_SQL, (6,)) == ti.run_pg2(direct, fn, BU_SQL, (6,))
        s = stats(p, "tenant_w")[fn]
        assert s["cache_errors"] == 0 and s["cache_misses"] == 1, s
        _warm(p, via, "tenant_w", fn, BU_SQL, (6,))
        time.sleep(0.3)   # the tick would have opened a LISTEN by now
        assert _listeners(direct, "tenant_w") == before
        via.close()
    finally:
        direct.close()
        _stop([p])


# ---------------------------------------------------------------------------------------------
# (f)-(k) scoped invalidation
# ---------------------------------------------------------------------------------------------

def _scoped_case(pgenv):
    """A recent job J of person P at site X of client C that fun_getjobneed(P, X, C) returns,
    and another site Y: ((P, X, C), (P, Y, C), job id, jobdesc, X, Y)."""
    conn = _direct(pgenv, "tenant_a")
    cur = conn.cursor()
    cur.execute("select people_id, bu_id, client_id from jobneed"
                " where plandatetime > now() - interval '1 day' and people_id is not null"
                " and bu_id is not null and client_id is not null order by id limit 1")
    row = cur.fetchone()
    if row is None:
        pytest.skip("no recent job in the fixture")
    cur.execute("select id, jobdesc from fun_getjobneed(%s, %s, %s) order by id limit 1", row)
    job = cur.fetchone()
    if job is None:
        pytest.skip("fun_getjobneed returns nothing")
    cur.execute("select id from bt where id <> %s order by id limit 1", (row[1],))
    other = cur.fetchone()
    conn.close()
    if other is None:
        pytest.skip("one site only")
    p, x, c = row
    return (p, x, c), (p, other[0], c), job[0], job[1], x, other[0]


def _hits(proxy, fn):
    return stats(proxy, "tenant_a").get(fn, {}).get("cache_hits", 0)


def _job(conn, params):
    return ti.run_pg2(conn, "fun_getjobneed", JOB_SQL, params)


def _fresh(direct, via, params):
    a, b = _job(direct, params), _job(via, params)
    if a != b:
        a, b = _job(direct, params), _job(via, params)   # a job may cross a time boundary
    assert a == b, ti.describe_diff(a, b)
    return a


def _write_via(proxy, sql, params):
    conn = psycopg2.connect(proxy.dsn("tenant_a"))
    conn.autocommit = True
    conn.cursor().execute(sql, params)
    conn.close()


def _assert_hit(proxy, via, direct, params):
    h0 = _hits(proxy, "fun_getjobneed")
    assert _job(via, params) == _job(direct, params)
    assert _hits(proxy, "fun_getjobneed") == h0 + 1, "site Y was invalidated too"


def test_scoped_write_through_pgshim(notify_pair, pgenv):
    p = notify_pair[0]
    x_params, y_params, jid, desc, _, _ = _scoped_case(pgenv)
    direct = _direct(pgenv, "tenant_a")
    via = psycopg2.connect(p.dsn("tenant_a"))
    via.autocommit = True
    try:
        before = _warm(p, via, "tenant_a", "fun_getjobneed", JOB_SQL, x_params)
        _warm(p, via, "tenant_a", "fun_getjobneed", JOB_SQL, y_params)
        syncs = p.log_text().count("waiting for the listener's sync")
        _write_via(p, "update jobneed set jobdesc = %s where id = %s",
                   ("scoped %s" % uuid.uuid4().hex[:8], jid))
        assert _fresh(direct, via, x_params) != before
        _assert_hit(p, via, direct, y_params)
        assert p.log_text().count("waiting for the listener's sync") > syncs, \
            "the commit did not wait for a sync"
    finally:
        _bypass_write(pgenv, "tenant_a", "update jobneed set jobdesc = %s where id = %s",
                      (desc, jid))
        direct.close()
        via.close()


def test_scoped_direct_write(notify_pair, pgenv, capsys):
    p = notify_pair[0]
    x_params, y_params, jid, desc, _, _ = _scoped_case(pgenv)
    direct = _direct(pgenv, "tenant_a")
    via = psycopg2.connect(p.dsn("tenant_a"))
    via.autocommit = True
    try:
        before = _warm(p, via, "tenant_a", "fun_getjobneed", JOB_SQL, x_params)
        _warm(p, via, "tenant_a", "fun_getjobneed", JOB_SQL, y_params)
        t = _bypass_write(pgenv, "tenant_a", "update jobneed set jobdesc = %s where id = %s",
                          ("scoped %s" % uuid.uuid4().hex[:8], jid))
        el = _fresh_within(via, direct, "fun_getjobneed", JOB_SQL, x_params, t, BOUND_S)
        assert _job(direct, x_params) != before
        _report(capsys, "fun_getjobneed site X (scoped, direct update)", el)
        _assert_hit(p, via, direct, y_params)
    finally:
        _bypass_write(pgenv, "tenant_a", "update jobneed set jobdesc = %s where id = %s",
                      (desc, jid))
        direct.close()
        via.close()


@pytest.mark.parametrize("how", ["pgshim", "direct"])
def test_scoped_row_moves_between_sites(notify_pair, pgenv, how):
    p = notify_pair[0]
    x_params, y_params, jid, _, x, y = _scoped_case(pgenv)
    direct = _direct(pgenv, "tenant_a")
    via = psycopg2.connect(p.dsn("tenant_a"))
    via.autocommit = True
    try:
        bx = _warm(p, via, "tenant_a", "fun_getjobneed", JOB_SQL, x_params)
        by = _warm(p, via, "tenant_a", "fun_getjobneed", JOB_SQL, y_params)
        if how == "pgshim":
            _write_via(p, "update jobneed set bu_id = %s where id = %s", (y, jid))
            ax, ay = _fresh(direct, via, x_params), _fresh(direct, via, y_params)
        else:
            t = _bypass_write(pgenv, "tenant_a", "update jobneed set bu_id = %s where id = %s",
                              (y, jid))
            _fresh_within(via, direct, "fun_getjobneed", JOB_SQL, x_params, t, BOUND_S)
            _fresh_within(via, direct, "fun_getjobneed", JOB_SQL, y_params, t, BOUND_S)
            ax, ay = _job(direct, x_params), _job(direct, y_params)
        assert ax != bx and ay != by, "the move changed nothing"
    finally:
        _bypass_write(pgenv, "tenant_a", "update jobneed set bu_id = %s where id = %s", (x, jid))
        direct.close()
        via.close()


def test_ddl_through_pgshim_invalidates_the_table(notify_pair, pgenv):
    p = notify_pair[0]
    _, y_params, _, _, _, _ = _scoped_case(pgenv)
    col = "pgshim_ddl_%s" % uuid.uuid4().hex[:6]
    direct = _direct(pgenv, "tenant_a")
    via = psycopg2.connect(p.dsn("tenant_a"))
    via.autocommit = True
    try:
        _warm(p, via, "tenant_a", "fun_getjobneed", JOB_SQL, y_params)
        s0 = stats(p, "tenant_a")["fun_getjobneed"]
        _write_via(p, "alter table jobneed add column %s int" % col, None)
        assert _job(via, y_params) == _job(direct, y_params)
        s1 = stats(p, "tenant_a")["fun_getjobneed"]
        assert s1["cache_hits"] == s0["cache_hits"], "DDL did not invalidate the table"
        assert s1["cache_misses"] == s0["cache_misses"] + 1, (s0, s1)
    finally:
        direct.cursor().execute("alter table jobneed drop column if exists %s" % col)
        direct.close()
        via.close()


def test_scoped_write_read_through_the_other_pgshim(notify_pair, pgenv):
    a, b = notify_pair
    x_params, y_params, jid, desc, _, _ = _scoped_case(pgenv)
    direct = _direct(pgenv, "tenant_a")
    via = psycopg2.connect(b.dsn("tenant_a"))
    via.autocommit = True
    wconn = psycopg2.connect(a.dsn("tenant_a"))
    try:
        for i in range(3):
            before = _warm(b, via, "tenant_a", "fun_getjobneed", JOB_SQL, x_params)
            _warm(b, via, "tenant_a", "fun_getjobneed", JOB_SQL, y_params)
            wconn.cursor().execute("update jobneed set jobdesc = %s where id = %s",
                                   ("other %d %s" % (i, uuid.uuid4().hex[:8]), jid))
            wconn.commit()   # returns once pgshim A's listener applied the notification
            assert _fresh(direct, via, x_params) != before
            _assert_hit(b, via, direct, y_params)
    finally:
        wconn.rollback()
        wconn.close()
        _bypass_write(pgenv, "tenant_a", "update jobneed set jobdesc = %s where id = %s",
                      (desc, jid))
        direct.close()
        via.close()


def test_listener_killed_by_the_writer_falls_back_to_the_table(notify_pair, pgenv):
    p = notify_pair[0]
    x_params, _, jid, desc, _, _ = _scoped_case(pgenv)
    direct = _direct(pgenv, "tenant_a")
    via = psycopg2.connect(p.dsn("tenant_a"))
    via.autocommit = True
    try:
        before = _warm(p, via, "tenant_a", "fun_getjobneed", JOB_SQL, x_params)
        # Through pgshim, the writing transaction kills every listener of tenant_a (waiting for
        # them to be gone): its notification reaches nobody, so the sync cannot succeed and the
        # commit must bump the table before its COMMIT returns.
        conn = psycopg2.connect(p.dsn("tenant_a"))
        cur = conn.cursor()
        cur.execute("update jobneed set jobdesc = %s where id = %s",
                    ("killed %s" % uuid.uuid4().hex[:8], jid))
        cur.execute("select bool_and(pg_terminate_backend(pid, 5000)) from pg_stat_activity"
                    " where application_name = 'pgshim-notify' and datname = 'tenant_a'")
        assert cur.fetchone()[0] is True
        conn.commit()
        conn.close()
        assert _fresh(direct, via, x_params) != before
    finally:
        _bypass_write(pgenv, "tenant_a", "update jobneed set jobdesc = %s where id = %s",
                      (desc, jid))
        direct.close()
        via.close()


def test_scoped_concurrent_writers_each_read_their_write(notify_pair, pgenv):
    """Several clients of one pgshim commit row writes at the same time (their syncs share
    round trips): right after its own COMMIT returned, each one reads its own write."""
    p = notify_pair[0]
    x_params, _, _, _, _, _ = _scoped_case(pgenv)
    direct = _direct(pgenv, "tenant_a")
    cur = direct.cursor()
    cur.execute("select id, jobdesc from fun_getjobneed(%s, %s, %s) order by id limit 4",
                x_params)
    jobs = cur.fetchall()
    if len(jobs) < 2:
        pytest.skip("fewer than two jobs at the site")
    errors = []

    def writer(k, jid):
        via = psycopg2.connect(p.dsn("tenant_a"))
        via.autocommit = True
        try:
            for i in range(6):
                mine = "concurrent %d/%d %s" % (k, i, uuid.uuid4().hex[:6])
                via.cursor().execute("update jobneed set jobdesc = %s where id = %s", (mine, jid))
                c2 = via.cursor()
                c2.execute(JOB_SQL, x_params)
                names = [d.name for d in c2.description]
                got = {r[names.index("id")]: r[names.index("jobdesc")] for r in c2.fetchall()}
                if got.get(jid) != mine:
                    errors.append("writer %d round %d: read %r, wrote %r" % (k, i, got.get(jid),
                                                                            mine))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("writer %d: %r" % (k, e))
        finally:
            via.close()

    warm = psycopg2.connect(p.dsn("tenant_a"))
    warm.autocommit = True
    try:
        _warm(p, warm, "tenant_a", "fun_getjobneed", JOB_SQL, x_params)
        warm.close()
        ths = [threading.Thread(target=writer, args=(k, j[0])) for k, j in enumerate(jobs)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(60)
        assert not any(th.is_alive() for th in ths)
        assert not errors, "\n".join(errors)
    finally:
        for jid, desc in jobs:
            _bypass_write(pgenv, "tenant_a", "update jobneed set jobdesc = %s where id = %s",
                          (desc, jid))
        direct.close()
