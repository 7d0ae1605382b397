"""The admin console (issue 6): virtual database "pgshim" on the main port and the Unix socket.

Checks, with real psql, psycopg2/psycopg 3 and a raw protocol client:
  - every SHOW command runs, and the PgBouncer-compatible ones have PgBouncer 1.18's column
    names in PgBouncer's order (lists copied from a real PgBouncer 1.18.0: SHOW POOLS etc.);
  - SET INTERCEPT changes one tenant only, SAVE keeps comments and survives a restart, RELOAD
    after SAVE changes nothing, SIGHUP swaps flags and a bad file keeps the old ones;
  - access: admin_users do everything, stats_users only SHOW (42501), others 28000;
  - malformed commands get 42601 and the console keeps serving; the extended protocol is
    refused with 0A000; a bad [tenant.x] key/mode/function fails the start with FILE:LINE.
pgshim-only: PgBouncer has no tenants or interception.
"""

import os
import re
import signal
import subprocess
import threading
import time

import psycopg2
import pytest

import proxyctl
import pgwire
from conftest import TEST_DB, is_pgbouncer

pytestmark = pytest.mark.skipif(is_pgbouncer(), reason="pgshim's admin console")

ADMIN_DB = "pgshim"

# Column lists observed on PgBouncer 1.18.0 (psql ... pgbouncer -c 'SHOW X').
PGBOUNCER_COLUMNS = {
    "POOLS": ["database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
              "cl_waiting_cancel_req", "sv_active", "sv_active_cancel", "sv_being_canceled",
              "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us",
              "pool_mode"],
    "CLIENTS": ["type", "user", "database", "state", "addr", "port", "local_addr", "local_port",
                "connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link",
                "remote_pid", "tls", "application_name"],
    "SERVERS": ["type", "user", "database", "state", "addr", "port", "local_addr", "local_port",
                "connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link",
                "remote_pid", "tls", "application_name"],
    "DATABASES": ["name", "host", "port", "database", "force_user", "pool_size", "min_pool_size",
                  "reserve_pool", "pool_mode", "max_connections", "current_connections",
                  "paused", "disabled"],
    "STATS": ["database", "total_xact_count", "total_query_count", "total_received",
              "total_sent", "total_xact_time", "total_query_time", "total_wait_time",
              "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent", "avg_xact_time",
              "avg_query_time", "avg_wait_time"],
    "STATS_TOTALS": ["database", "xact_count", "query_count", "bytes_received", "bytes_sent",
                     "xact_time", "query_time", "wait_time"],
    "STATS_AVERAGES": ["database", "xact_count", "query_count", "bytes_received", "bytes_sent",
                       "xact_time", "query_time", "wait_time"],
    "CONFIG": ["key", "value", "default", "changeable"],
    "VERSION": ["version"],
}

# pgshim's own commands and their columns (documented in etc/pgshim.ini and the issue).
PGSHIM_COLUMNS = {
    "TENANTS": ["tenant", "pools", "clients", "servers", "configured", "modes"],
    "INTERCEPTS": ["tenant", "function", "family", "mode", "ttl", "calls", "native",
                   "cache_hits", "cache_misses", "cache_stores", "cache_errors", "passed",
                   "fallbacks", "shadow_compared", "shadow_mismatches", "shadow_skipped",
                   "p50_us", "p99_us",
                   "mode_changed_at",
                   "mode_changed_how", "passed_reasons"],
    "INTERCEPT CANDIDATES": ["tenant", "function", "mode", "calls", "eligible_calls",
                             "eligible", "last_reason"],
}

SECTIONS = {
    "intercept": [("all", "off"), ("ttl.jobs", "30")],
    "tenant.tenant_a": [("assets", "native"), ("fn_getassetdetails", "shadow")],
    "tenant.tenant_b": [("capabilities", "cache")],
}


@pytest.fixture
def admin_proxy(proxies, testdb):
    return proxies.start_oneoff(extra={"admin_users": "postgres", "stats_users": "app"},
                                sections=SECTIONS)


def _console(proxy, user="postgres"):
    conn = psycopg2.connect(proxy.dsn(ADMIN_DB, user=user))
    conn.autocommit = True
    return conn


def _q(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        cols = [d.name for d in cur.description] if cur.description else None
        rows = cur.fetchall() if cur.description else None
        return cols, rows, cur.statusmessage


def _psql(proxy, sql, host="127.0.0.1", user="postgres"):
    env = dict(os.environ, PGPASSWORD=proxy.users[user], PGCONNECT_TIMEOUT="10")
    r = subprocess.run(["psql", "-X", "-A", "-F", "|", "-v", "ON_ERROR_STOP=1", "-h", host,
                        "-p", str(proxy.port), "-U", user, "-d", ADMIN_DB, "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    return r


def _intercepts(conn, tenant):
    cols, rows, _ = _q(conn, "SHOW INTERCEPTS %s" % tenant)
    return {r[cols.index("function")]: dict(zip(cols, r)) for r in rows}


def test_psql_runs_every_show_with_pgbouncer_columns(admin_proxy):
    for what, expected in list(PGBOUNCER_COLUMNS.items()) + list(PGSHIM_COLUMNS.items()):
        r = _psql(admin_proxy, "SHOW %s" % what)
        assert r.returncode == 0, (what, r.stderr)
        header = r.stdout.splitlines()[0].split("|")
        assert header == expected, what
        assert re.search(r"^\(\d+ rows?\)$", r.stdout, re.M), (what, r.stdout)


def test_psql_over_unix_socket_and_lowercase_semicolon(admin_proxy):
    r = _psql(admin_proxy, "show version;", host=admin_proxy.sockdir)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].startswith("pgshim")


def test_show_types_and_command_tags(admin_proxy):
    conn = _console(admin_proxy)
    cur = conn.cursor()
    cur.execute("SHOW POOLS")
    types = {d.name: d.type_code for d in cur.description}
    assert types["database"] == 25 and types["cl_active"] == 23 and types["pool_mode"] == 25
    assert cur.statusmessage == "SHOW"
    cur.execute("SHOW INTERCEPTS tenant_a")
    types = {d.name: d.type_code for d in cur.description}
    assert types["calls"] == 20 and types["mode"] == 25
    assert len(cur.fetchall()) == 11     # one row per registered legacy function
    conn.close()


def test_config_modes_and_ttls_are_shown(admin_proxy):
    conn = _console(admin_proxy)
    a = _intercepts(conn, "tenant_a")
    assert a["fn_getassetdetails"]["mode"] == "shadow"       # function key beats family key
    assert a["fn_getassetvsquestionset"]["mode"] == "native"
    assert a["fun_getjobneed"]["mode"] == "off"
    assert a["fun_getjobneed"]["ttl"] == 30                   # [intercept] ttl.jobs
    assert a["fn_menupbt"]["ttl"] == 300                      # built-in default
    assert a["fn_getassetdetails"]["mode_changed_how"] == "config"
    b = _intercepts(conn, "tenant_b")
    assert b["get_web_caps_for_client"]["mode"] == "cache"
    cols, rows, _ = _q(conn, "SHOW TENANTS")
    names = [r[0] for r in rows]
    assert "*" in names and "tenant_a" in names and "tenant_b" in names
    conn.close()


def test_set_intercept_changes_tenant_a_only(admin_proxy):
    conn = _console(admin_proxy)
    before_b = _intercepts(conn, "tenant_b")
    _, _, tag = _q(conn, "SET INTERCEPT tenant_a jobs native")
    assert tag == "SET"
    a = _intercepts(conn, "tenant_a")
    for fn in ("fun_getjobneed", "fun_getexttourjobneed", "fn_get_schedule_for_adhoc"):
        assert a[fn]["mode"] == "native"
        assert a[fn]["mode_changed_how"] == "SET INTERCEPT"
    b = _intercepts(conn, "tenant_b")
    assert {f: r["mode"] for f, r in b.items()} == {f: r["mode"] for f, r in before_b.items()}
    # Function name, case-insensitive keyword and mode, ALL, and the defaults ("*").
    _q(conn, "set intercept tenant_a FUN_GETJOBNEED Shadow;")
    assert _intercepts(conn, "tenant_a")["fun_getjobneed"]["mode"] == "shadow"
    _q(conn, "SET INTERCEPT tenant_b ALL native")
    assert {r["mode"] for r in _intercepts(conn, "tenant_b").values()} == {"native"}
    fresh_before = _intercepts(conn, "tenant_new")
    _q(conn, "SET INTERCEPT tenant_new fn_menupbt native")
    fresh = _intercepts(conn, "tenant_new")
    assert fresh["fn_menupbt"]["mode_changed_how"] == "SET INTERCEPT"
    for fn in ("fn_mendownbt", "fun_getjobneed"):      # untouched: stamp of the defaults
        assert fresh[fn]["mode_changed_at"] == fresh_before[fn]["mode_changed_at"]
        assert fresh[fn]["mode_changed_how"] == "config"
    _q(conn, "SET INTERCEPT * bu cache")
    assert _intercepts(conn, "some_other_db")["fn_menupbt"]["mode"] == "cache"
    assert _intercepts(conn, "tenant_b")["fn_menupbt"]["mode"] == "native"
    conn.close()
    assert "SET INTERCEPT tenant_a jobs native" in admin_proxy.log_text()


def test_set_intercept_keeps_other_connections(admin_proxy, testdb):
    app = psycopg2.connect(admin_proxy.dsn(testdb))
    app.autocommit = True
    with app.cursor() as cur:
        cur.execute("SELECT 1")
    conn = _console(admin_proxy)
    _q(conn, "SET INTERCEPT %s ALL native" % testdb)
    with app.cursor() as cur:        # same connection still works
        cur.execute("SELECT 2")
        assert cur.fetchone() == (2,)
    app.close()
    conn.close()


def test_save_then_restart_keeps_flags_and_comments(admin_proxy):
    with open(admin_proxy.ini_path) as f:
        text = f.read()
    text = text.replace("[tenant.tenant_a]", "; tenant a: the pilot tenant\n[tenant.tenant_a]")
    text += "\n# trailing comment stays\n"
    admin_proxy.rewrite_ini(text=text)
    os.chmod(admin_proxy.ini_path, 0o640)
    conn = _console(admin_proxy)
    _q(conn, "RELOAD")
    _q(conn, "SET INTERCEPT tenant_a fn_menupbt native")
    _q(conn, "SET INTERCEPT tenant_c jobs cache")
    _q(conn, "SET INTERCEPT * capabilities shadow")
    _, _, tag = _q(conn, "SAVE")
    assert tag == "SAVE"
    conn.close()
    with open(admin_proxy.ini_path) as f:
        saved = f.read()
    assert "; tenant a: the pilot tenant\n[tenant.tenant_a]" in saved
    assert "# trailing comment stays" in saved
    assert saved.startswith("; written by tests/integration/proxyctl.py")
    assert re.search(r"^\[tenant\.tenant_c\]\njobs = cache$", saved, re.M)
    assert re.search(r"^fn_menupbt = native$", saved, re.M)
    assert re.search(r"^capabilities = shadow$", saved, re.M)
    # only the changed keys: the original lines are all still there, in order
    orig = [l for l in text.splitlines() if l.strip()]
    kept = [l for l in saved.splitlines() if l in orig]
    assert kept == orig
    assert not [n for n in os.listdir(admin_proxy.dir) if ".save" in n]   # no temp file left
    assert os.stat(admin_proxy.ini_path).st_mode & 0o777 == 0o640
    admin_proxy.stop()
    admin_proxy.start(keep_files=True)
    conn = _console(admin_proxy)
    assert _intercepts(conn, "tenant_a")["fn_menupbt"]["mode"] == "native"
    assert _intercepts(conn, "tenant_a")["fn_getassetdetails"]["mode"] == "shadow"
    assert _intercepts(conn, "tenant_c")["fun_getjobneed"]["mode"] == "cache"
    assert _intercepts(conn, "nobody")["get_web_caps_for_client"]["mode"] == "shadow"
    conn.close()


def test_save_replaces_existing_key_in_place(admin_proxy):
    with open(admin_proxy.ini_path) as f:
        text = f.read()
    text = text.replace("fn_getassetdetails = shadow", "  FN_GetAssetDetails=shadow")
    admin_proxy.rewrite_ini(text=text)
    conn = _console(admin_proxy)
    _q(conn, "RELOAD")
    assert _intercepts(conn, "tenant_a")["fn_getassetdetails"]["mode"] == "shadow"
    _q(conn, "SET INTERCEPT tenant_a assets off")    # family key and its function key
    _q(conn, "SAVE")
    with open(admin_proxy.ini_path) as f:
        saved = f.read()
    assert saved.lower().count("fn_getassetdetails") == 1
    assert "  FN_GetAssetDetails= off\n" in saved
    section = saved.split("[tenant.tenant_a]")[1].split("[")[0]
    assert "assets = off" in section
    _q(conn, "RELOAD")
    assert _intercepts(conn, "tenant_a")["fn_getassetdetails"]["mode"] == "off"
    conn.close()


def test_reload_after_save_changes_nothing(admin_proxy):
    conn = _console(admin_proxy)
    _q(conn, "SET INTERCEPT tenant_a bu shadow")
    _q(conn, "SET INTERCEPT tenant_d assets native")
    _q(conn, "SAVE")
    before = {t: _intercepts(conn, t) for t in ("tenant_a", "tenant_b", "tenant_d", "x")}
    time.sleep(1.1)     # a changed mode would get a new (later) timestamp
    _, _, tag = _q(conn, "RELOAD")
    assert tag == "RELOAD"
    after = {t: _intercepts(conn, t) for t in before}
    assert after == before
    conn.close()


def test_unsaved_set_is_dropped_by_reload(admin_proxy):
    conn = _console(admin_proxy)
    _q(conn, "SET INTERCEPT tenant_a fn_menupbt native")
    _q(conn, "RELOAD")
    a = _intercepts(conn, "tenant_a")["fn_menupbt"]
    assert a["mode"] == "off" and a["mode_changed_how"] == "reload"
    conn.close()


def test_sighup_swaps_flags_and_bad_file_keeps_them(admin_proxy):
    with open(admin_proxy.ini_path) as f:
        good = f.read()
    admin_proxy.rewrite_ini(text=good.replace("assets = native", "assets = cache"))
    admin_proxy.signal(signal.SIGHUP)
    conn = _console(admin_proxy)
    deadline = time.time() + 5
    while _intercepts(conn, "tenant_a")["fn_getassetvsquestionset"]["mode"] != "cache":
        assert time.time() < deadline, "SIGHUP did not reload the flags"
        time.sleep(0.05)
    bad = good.replace("assets = native", "assets = warp")
    admin_proxy.rewrite_ini(text=bad)
    line = bad.splitlines().index("assets = warp") + 1
    off = admin_proxy.log_size()
    admin_proxy.signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "reload failed" not in admin_proxy.log_text(off):
        assert time.time() < deadline
        time.sleep(0.05)
    assert "%s:%d:" % (admin_proxy.ini_path, line) in admin_proxy.log_text(off)
    assert _intercepts(conn, "tenant_a")["fn_getassetvsquestionset"]["mode"] == "cache"
    with pytest.raises(psycopg2.Error) as ei:
        _q(conn, "RELOAD")
    assert "%s:%d:" % (admin_proxy.ini_path, line) in str(ei.value)
    _q(conn, "SHOW VERSION")
    conn.close()


def test_user_not_in_admin_or_stats_users_gets_28000(admin_proxy):
    w = pgwire.Conn("127.0.0.1", admin_proxy.port)
    try:
        err = w.startup("md5user", ADMIN_DB, password=admin_proxy.users["md5user"])
        assert err is not None and err["C"] == "28000", err
    finally:
        w.close()
    # a wrong password is still an authentication failure first
    w = pgwire.Conn("127.0.0.1", admin_proxy.port)
    try:
        err = w.startup("postgres", ADMIN_DB, password="wrong")
        assert err is not None and err["C"] == "28P01", err
    finally:
        w.close()


def test_stats_user_may_only_show(admin_proxy):
    conn = _console(admin_proxy, user="app")
    for what in list(PGBOUNCER_COLUMNS) + list(PGSHIM_COLUMNS):
        _q(conn, "SHOW %s" % what)
    for cmd in ("SET INTERCEPT tenant_a ALL native", "SAVE", "RELOAD", "PAUSE", "RESUME",
                "SHUTDOWN"):
        with pytest.raises(psycopg2.Error) as ei:
            _q(conn, cmd)
        assert ei.value.pgcode == "42501", cmd
    assert _intercepts(conn, "tenant_a")["fun_getjobneed"]["mode"] == "off"
    conn.close()


@pytest.mark.parametrize("cmd", [
    "bogus", "SHOW", "SHOW NOTHING", "SHOW POOLS extra", "SET INTERCEPT",
    "SET INTERCEPT tenant_a", "SET INTERCEPT tenant_a jobs", "SET INTERCEPT tenant_a jobs fast",
    "SET INTERCEPT tenant_a no_such_fn native", "SET INTERCEPT tenant_a jobs native extra",
    "SET work_mem = 1", "SELECT 1", "SHOW POOLS; SHOW CLIENTS", "SAVE now", "RELOAD x",
    "SET INTERCEPT \"unterminated jobs native", "\x01\x02 garbage \x7f",
    "SHOW INTERCEPT", "SHOW INTERCEPT CANDIDATES now", "PAUSE a b",
    'SET INTERCEPT "a]b" jobs native', 'SET INTERCEPT "" jobs native',
])
def test_malformed_commands_get_42601_and_console_keeps_serving(admin_proxy, cmd):
    conn = _console(admin_proxy)
    with pytest.raises(psycopg2.Error) as ei:
        _q(conn, cmd)
    assert ei.value.pgcode == "42601", (cmd, ei.value)
    cols, rows, _ = _q(conn, "SHOW VERSION")
    assert rows[0][0].startswith("pgshim")
    conn.close()


def test_raw_protocol_errors_keep_serving(admin_proxy):
    w = pgwire.Conn("127.0.0.1", admin_proxy.port)
    try:
        assert w.startup("postgres", ADMIN_DB, password=admin_proxy.users["postgres"]) is None
        rows, tags, err = w.query("")
        assert err is None and rows == []
        for junk in ("show", "SET INTERCEPT * * *", "show pools;;", "; show"):
            rows, tags, err = w.query(junk)
            assert err is not None and err["C"] == "42601", junk
        rows, tags, err = w.query("SHOW VERSION")
        assert err is None and tags == ["SHOW"] and rows[0][0].startswith("pgshim")
    finally:
        w.close()


def test_extended_protocol_is_refused_clearly(admin_proxy):
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(admin_proxy.dsn(ADMIN_DB), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as ei:
            conn.execute("SHOW INTERCEPTS %s", ("tenant_a",))
        assert ei.value.sqlstate == "0A000"
        assert "simple query" in str(ei.value)
        assert conn.execute("SHOW VERSION").fetchone()[0].startswith("pgshim")


def test_pause_resume(admin_proxy, testdb):
    import threading
    app = psycopg2.connect(admin_proxy.dsn(testdb))      # creates the pool
    app.autocommit = True
    with app.cursor() as cur:
        cur.execute("SELECT 1")
    app.close()
    conn = _console(admin_proxy)
    _, _, tag = _q(conn, "PAUSE %s" % testdb)
    assert tag == "PAUSE"
    cols, rows, _ = _q(conn, "SHOW DATABASES")
    assert [r for r in rows if r[0] == "*"][0][cols.index("paused")] == 0
    done = threading.Event()

    def client():
        c = psycopg2.connect(admin_proxy.dsn(testdb))
        with c.cursor() as cur:
            cur.execute("SELECT 42")
            cur.fetchone()
        c.close()
        done.set()

    t = threading.Thread(target=client, daemon=True)
    t.start()
    assert not done.wait(1.0), "a query ran while its database was paused"
    _, _, tag = _q(conn, "RESUME %s" % testdb)
    assert tag == "RESUME"
    assert done.wait(10), "RESUME did not release the waiting client"
    with pytest.raises(psycopg2.Error) as ei:
        _q(conn, "PAUSE no_such_database_anywhere_x")
    assert ei.value.pgcode == "3D000"
    _q(conn, "PAUSE")
    _q(conn, "RESUME")
    conn.close()


def test_shutdown(admin_proxy):
    conn = _console(admin_proxy)
    try:
        _q(conn, "SHUTDOWN")
    except psycopg2.Error:
        pass        # the reply may race the exit, as with PgBouncer
    deadline = time.time() + 10
    while admin_proxy.alive():
        assert time.time() < deadline, "SHUTDOWN did not stop pgshim"
        time.sleep(0.05)
    admin_proxy.start(keep_files=True)    # the fixture expects a live proxy at the end


def test_sigterm_does_not_wait_for_console_clients(admin_proxy):
    conn = _console(admin_proxy)
    _q(conn, "SHOW VERSION")
    t0 = time.time()
    admin_proxy.signal(signal.SIGTERM)
    while admin_proxy.alive():
        assert time.time() - t0 < 10, "an idle console client held up a graceful shutdown"
        time.sleep(0.05)
    conn.close()
    admin_proxy.start(keep_files=True)


BAD_SECTIONS = [
    ("[tenant.x]", "bogus_key = native", "unknown key"),
    ("[tenant.x]", "jobs = warp", "unknown mode"),
    ("[tenant.x]", "fn_no_such_function = native", "unknown key"),
    ("[tenant.x]", "ttl.jobs = soon", "bad TTL"),
    ("[tenant.x]", "ttl.nofamily = 5", "unknown key"),
    ("[intercept]", "assets = sometimes", "unknown mode"),
]


@pytest.mark.parametrize("section,line,why", BAD_SECTIONS)
def test_bad_tenant_config_fails_start_with_file_line(tmp_path, section, line, why):
    binary = proxyctl.find_pgshim_binary()
    ini = tmp_path / "bad.ini"
    text = ("; bad flags\n[databases]\n* = host=127.0.0.1 port=1\n\n[pgshim]\n"
            "listen_addr = 127.0.0.1\nlisten_port = 1\nauth_type = trust\n\n"
            "%s\n; a comment\nall = off\n%s\n" % (section, line))
    ini.write_text(text)
    lineno = text.splitlines().index(line) + 1
    for args in (["--check-config", str(ini)], ["-c", str(ini)]):
        r = subprocess.run([binary] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=30)
        assert r.returncode != 0, args
        assert "%s:%d:" % (ini, lineno) in r.stderr, r.stderr
        assert why in r.stderr, r.stderr


def _stats(conn, what="STATS_TOTALS"):
    cols, rows, _ = _q(conn, "SHOW %s" % what)
    return {r[0]: dict(zip(cols, (int(x) if i else x for i, x in enumerate(r)))) for r in rows}


def test_show_stats_counts_queries_transactions_bytes_and_waits(proxies, testdb):
    """SHOW STATS/STATS_TOTALS count what went through: 10 autocommit statements are 10
    queries and 10 transactions, BEGIN; SELECT; COMMIT is 3 queries and 1 transaction, bytes
    both ways grow, and a client queued behind a busy pool_size=1 pool adds its wait."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=1,
                             extra={"admin_users": "postgres", "stats_period": "1"})
    admin = _console(p)
    before = _stats(admin).get(TEST_DB)
    assert before is None or before["query_count"] == 0
    app = psycopg2.connect(p.dsn(TEST_DB))
    app.autocommit = True
    with app.cursor() as cur:
        for i in range(10):
            cur.execute("SELECT %s", (i,))
    mid = _stats(admin)[TEST_DB]
    assert mid["query_count"] == 10 and mid["xact_count"] == 10, mid
    assert mid["bytes_received"] > 10 * len("SELECT 0") and mid["bytes_sent"] > 0, mid
    assert mid["query_time"] > 0 and mid["xact_time"] >= mid["query_time"], mid
    with app.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
        cur.execute("COMMIT")
    after = _stats(admin)[TEST_DB]
    assert after["query_count"] == 13 and after["xact_count"] == 11, after
    # pool_size = 1: a second client waits while the first holds a transaction for 0.5 s.
    other = psycopg2.connect(p.dsn(TEST_DB))
    other.autocommit = True
    with app.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
        done = []
        t = threading.Thread(target=lambda: (other.cursor().execute("SELECT 2"), done.append(1)))
        t.start()
        time.sleep(0.5)
        cur.execute("COMMIT")
        t.join(10)
    assert done == [1]
    waited = _stats(admin)[TEST_DB]
    assert waited["wait_time"] >= 300000, waited
    full = _stats(admin, "STATS")[TEST_DB]
    assert full["total_query_count"] == waited["query_count"]
    assert full["total_wait_time"] == waited["wait_time"]
    # stats_period = 1: the averages follow within a couple of janitor ticks.
    deadline = time.time() + 5
    while time.time() < deadline:
        avg = _stats(admin, "STATS_AVERAGES").get(TEST_DB)
        if avg and avg["query_count"] > 0:
            break
        with app.cursor() as cur:
            cur.execute("SELECT 1")
        time.sleep(0.3)
    assert avg and avg["query_count"] > 0 and avg["query_time"] > 0, avg
    assert re.search(r"stats: %s: \d+ xacts/s, \d+ queries/s" % TEST_DB, p.log_text()), p.log_tail()
    app.close()
    other.close()
    admin.close()
