"""Limits, timeouts, reload and signals of the pooler (issue 3), with PgBouncer's option names,
meanings and client-visible errors.

Each test starts its own proxy with the option under test (proxies.start_oneoff), asserts what
the client sees (SQLSTATE and message text, as PgBouncer 1.18 sends them) and that a bystander
client is unaffected. Timeouts are enforced by a once-a-second sweep in both proxies, so the
time bounds allow about a second of slack.

PgBouncer 1.18 differences accepted here: max_client_conn is 08P01 there (pgshim sends 53300,
PostgreSQL's too_many_connections); tests of pgshim-only behaviour (log format, reload messages,
shutdown_wait_timeout, command line) are skipped for PgBouncer.
"""

import os
import signal
import subprocess
import threading
import time

import psycopg2
import pytest

import pgwire
import proxyctl
from conftest import is_pgbouncer
from test_failures import assert_works, first_error, raw_login, read_until_ready_or_eof

MAX_CLIENT_CONN_STATES = ("53300", "08P01") if is_pgbouncer() else ("53300",)
pgshim_only = pytest.mark.skipif(is_pgbouncer(), reason="pgshim-specific behaviour")


def expect_fatal(c, code, message, within):
    """Reads from c until EOF; asserts a FATAL with code and message arrived within seconds."""
    t0 = time.monotonic()
    msgs, eof = read_until_ready_or_eof(c)
    waited = time.monotonic() - t0
    err = first_error(msgs)
    assert err is not None, msgs
    assert (err.get("S"), err["C"], err["M"]) == ("FATAL", code, message), err
    assert eof
    assert waited <= within, waited
    return waited


@pytest.fixture(scope="module")
def limitsdb(pgenv, testdb):
    """A database of its own, so server connection counts are not disturbed by other tests."""
    name = "pgshim_limits"
    conn = psycopg2.connect(pgenv.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        cur.execute("CREATE DATABASE %s" % name)
        cur.execute("GRANT ALL ON DATABASE %s TO PUBLIC" % name)
    conn.close()
    conn = psycopg2.connect(pgenv.dsn(name))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("GRANT ALL ON SCHEMA public TO PUBLIC")
        cur.execute("CREATE SEQUENCE check_seq")
        cur.execute("GRANT ALL ON SEQUENCE check_seq TO PUBLIC")
    conn.close()
    return name


def backends(pgdirect, dbname, user=None):
    """Server connections PostgreSQL has for dbname (and user), other than our own."""
    with pgdirect.cursor() as cur:
        cur.execute("select count(*) from pg_stat_activity where datname = %s and "
                    "(%s::text is null or usename = %s) and pid <> pg_backend_pid() "
                    "and backend_type = 'client backend'", (dbname, user, user))
        return cur.fetchone()[0]


def wait_for(pred, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


# ------------------------------------------------------------------------------- client limits

def test_max_client_conn(proxies, testdb):
    """max_client_conn = 3: the 4th client gets FATAL "no more connections allowed
    (max_client_conn)"; the three keep working and a slot freed is usable again."""
    p = proxies.start_oneoff(pool_mode="transaction", max_client_conn=3)
    held = [raw_login(p, testdb) for _ in range(3)]
    c = pgwire.Conn("127.0.0.1", p.port, timeout=10)
    err = c.startup("postgres", testdb, p.users["postgres"])
    c.close()
    assert err is not None and err["C"] in MAX_CLIENT_CONN_STATES, err
    assert err["M"] == "no more connections allowed (max_client_conn)", err
    for h in held:
        assert h.query("select 1")[2] is None
    held.pop().close()
    time.sleep(0.3)
    held.append(raw_login(p, testdb))
    for h in held:
        h.close()


def test_query_wait_timeout(proxies, testdb):
    """pool_size = 1, query_wait_timeout = 1: while one client holds the only server in a
    transaction, another client's query gets FATAL 08P01 "query_wait_timeout"; the holder is
    unaffected."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=1, extra={"query_wait_timeout": 1})
    a = raw_login(p, testdb)
    assert a.query("begin")[2] is None
    b = raw_login(p, testdb)
    b.send_msg(b"Q", b"select 1\0")
    waited = expect_fatal(b, "08P01", "query_wait_timeout", within=4)
    assert waited >= 0.9
    assert a.query("select 5")[0] == [["5"]]
    assert a.query("commit")[2] is None
    a.close()


def test_query_timeout(proxies, testdb):
    """query_timeout = 1: a 10-second query is cut off with FATAL 08P01 "query timeout" (the
    server connection is closed, as the query may still run); other clients are unaffected."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=2, extra={"query_timeout": 1})
    other = raw_login(p, testdb)
    c = raw_login(p, testdb)
    c.send_msg(b"Q", b"select pg_sleep(10)\0")
    waited = expect_fatal(c, "08P01", "query timeout", within=4)
    assert waited >= 0.9
    assert other.query("select pg_sleep(0.2), 1")[2] is None
    other.close()
    assert_works(p, testdb)


def test_idle_transaction_timeout(proxies, testdb, pgdirect):
    """idle_transaction_timeout = 1: a client idle inside a transaction gets FATAL 08P01 "idle
    transaction timeout" and its transaction is rolled back; an idle client outside a
    transaction is untouched."""
    with pgdirect.cursor() as cur:
        cur.execute("drop table if exists idle_tx; create table idle_tx (x int)")
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=2,
                             extra={"idle_transaction_timeout": 1})
    idle = raw_login(p, testdb)
    assert idle.query("select 1")[2] is None
    c = raw_login(p, testdb)
    assert c.query("begin")[2] is None
    assert c.query("insert into idle_tx values (1)")[2] is None
    expect_fatal(c, "08P01", "idle transaction timeout", within=4)
    assert idle.query("select count(*) from idle_tx")[0] == [["0"]]
    idle.close()


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_client_idle_timeout(proxies, testdb, mode):
    """client_idle_timeout = 1.5: a client with no server that sends nothing gets FATAL 08P01
    "client_idle_timeout"; a client that keeps querying is not closed. (As in PgBouncer the
    limit applies to clients not linked to a server, so in session mode it covers clients
    that have not run a query yet.)"""
    p = proxies.start_oneoff(pool_mode=mode, pool_size=2, extra={"client_idle_timeout": 1.5})
    busy = raw_login(p, testdb)
    idle = raw_login(p, testdb)
    if mode == "transaction":
        assert idle.query("select 1")[2] is None
    stop = threading.Event()
    busy_errors = []

    def keep_busy():
        while not stop.is_set():
            rows, _, err = busy.query("select 1")
            if err is not None:
                busy_errors.append(err)
            time.sleep(0.2)

    t = threading.Thread(target=keep_busy)
    t.start()
    try:
        expect_fatal(idle, "08P01", "client_idle_timeout", within=5)
    finally:
        time.sleep(0.5)
        stop.set()
        t.join(10)
    assert not busy_errors
    busy.close()


@pgshim_only
def test_client_login_timeout_no_startup(proxies, testdb):
    """client_login_timeout = 1: a connection that never sends a startup packet is closed."""
    p = proxies.start_oneoff(pool_mode="transaction", extra={"client_login_timeout": 1})
    c = pgwire.Conn("127.0.0.1", p.port, timeout=10)
    assert c.at_eof(timeout=5)
    c.close()
    assert_works(p, testdb)


# ------------------------------------------------------------------------------- pool sizing

def test_reserve_pool(proxies, limitsdb):
    """pool_size = 1, reserve_pool_size = 1, reserve_pool_timeout = 0.5: a client that waited
    longer than the reserve timeout gets the reserve server, well before query_wait_timeout."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=1,
                             extra={"reserve_pool_size": 1, "reserve_pool_timeout": 0.5,
                                    "query_wait_timeout": 20})
    a = raw_login(p, limitsdb)
    assert a.query("begin")[2] is None
    b = raw_login(p, limitsdb, timeout=15)
    t0 = time.monotonic()
    rows, _, err = b.query("select 2")
    waited = time.monotonic() - t0
    assert err is None and rows == [["2"]]
    assert 0.3 <= waited <= 4, waited
    a.query("commit")
    a.close()
    b.close()


def test_max_db_connections(proxies, limitsdb, pgdirect):
    """max_db_connections = 1 over two users' pools of the same database: the second user's
    query waits until the first user's transaction ends, then runs."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=5,
                             extra={"max_db_connections": 1, "query_wait_timeout": 20,
                                    "server_idle_timeout": 0.5})
    a = raw_login(p, limitsdb, "postgres")
    assert a.query("begin")[2] is None
    done, conns = [], []

    def second():
        # A new pool has to log in to PostgreSQL before it can welcome its first client, so
        # both the login and the query wait for the connection slot.
        b = raw_login(p, limitsdb, "app", timeout=15)
        conns.append(b)
        done.append((b.query("select 3"), time.monotonic()))

    t = threading.Thread(target=second)
    t.start()
    time.sleep(1.5)
    assert not done, "the second pool exceeded max_db_connections"
    assert backends(pgdirect, limitsdb) == 1
    committed = time.monotonic()
    assert a.query("commit")[2] is None
    t.join(10)
    assert done and done[0][0][0] == [["3"]], done
    assert done[0][1] >= committed
    a.close()
    conns[0].close()


def test_max_user_connections(proxies, limitsdb, testdb, pgdirect):
    """max_user_connections = 1 over one user's pools of two databases: the second pool's query
    waits until the first pool's server is free (closed after server_idle_timeout)."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=5, users={"app": "apppass"},
                             extra={"max_user_connections": 1, "query_wait_timeout": 20,
                                    "server_idle_timeout": 0.5})
    a = raw_login(p, limitsdb, "app")
    assert a.query("begin")[2] is None
    done, conns = [], []

    def second():
        b = raw_login(p, testdb, "app", timeout=15)
        conns.append(b)
        done.append(b.query("select 4"))

    t = threading.Thread(target=second)
    t.start()
    time.sleep(1.5)
    assert not done, "the second pool exceeded max_user_connections"
    assert a.query("commit")[2] is None
    t.join(10)
    assert done and done[0][0] == [["4"]], done
    a.close()
    conns[0].close()


def test_min_pool_size(proxies, limitsdb, pgdirect):
    """min_pool_size = 3: once the pool exists it keeps three server connections open even
    though one client needs only one."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=5, users={"app": "apppass"},
                             extra={"min_pool_size": 3})
    a = raw_login(p, limitsdb, "app")
    assert a.query("select 1")[2] is None
    assert wait_for(lambda: backends(pgdirect, limitsdb, "app") == 3, 5), \
        backends(pgdirect, limitsdb, "app")
    a.close()


def test_server_idle_timeout(proxies, limitsdb, pgdirect):
    """server_idle_timeout = 1: idle server connections are closed after about a second."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=5, users={"app": "apppass"},
                             extra={"server_idle_timeout": 1})
    a = raw_login(p, limitsdb, "app")
    assert a.query("select 1")[2] is None
    assert backends(pgdirect, limitsdb, "app") == 1
    assert wait_for(lambda: backends(pgdirect, limitsdb, "app") == 0, 5)
    assert a.query("select 2")[0] == [["2"]]     # and a new one is opened on demand
    a.close()


def test_server_lifetime(proxies, testdb):
    """server_lifetime = 1: a server connection older than that is closed when released, so
    the same client gets a new backend later; no client sees an error."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=1, extra={"server_lifetime": 1})
    a = raw_login(p, testdb)
    pid1 = a.query("select pg_backend_pid()")[0][0][0]
    time.sleep(2.5)
    pid2 = a.query("select pg_backend_pid()")[0][0][0]
    assert a.query("select pg_backend_pid()")[2] is None
    assert pid1 != pid2
    a.close()


def test_server_check_query(proxies, limitsdb):
    """server_check_delay = 0.5: a server idle longer than that runs server_check_query before
    it is handed out again (observed through a sequence the check query advances)."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=1,
                             extra={"server_check_delay": 0.5,
                                    "server_check_query": "select nextval('check_seq')"})
    a = raw_login(p, limitsdb)
    start = int(a.query("select last_value from check_seq")[0][0][0])
    for _ in range(3):
        time.sleep(1.1)
        assert a.query("select 1")[2] is None
    end = int(a.query("select last_value from check_seq")[0][0][0])
    assert end - start >= 2, (start, end)
    a.close()


def test_server_login_retry(proxies, pgenv, testdb):
    """After a failed server login the pool does not hammer PostgreSQL: a new attempt is made
    only after server_login_retry, then the pool works again."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=2,
                             extra={"server_login_retry": 2, "query_wait_timeout": 15})
    a = raw_login(p, testdb)
    assert a.query("select 1")[2] is None
    a.close()
    pgenv.stop_pg()
    try:
        b = raw_login(p, testdb, timeout=20)
        b.send_msg(b"Q", b"select 1\0")
        time.sleep(0.5)            # the first attempt has failed by now
    finally:
        pgenv.start_pg()
    t0 = time.monotonic()
    msgs, eof = read_until_ready_or_eof(b)
    assert first_error(msgs) is None and not eof, msgs
    assert time.monotonic() - t0 <= 6
    b.close()


# ---------------------------------------------------------------------------- reload, signals

@pgshim_only
def test_reload_applies_without_dropping(proxies, testdb):
    """SIGHUP with a changed reloadable option (query_wait_timeout) applies it to the running
    proxy without closing a connection; a changed listen_port is logged as needing a restart."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=1,
                             extra={"query_wait_timeout": 30})
    held = raw_login(p, testdb)
    assert held.query("begin")[2] is None
    off = p.log_size()
    p.rewrite_ini(query_wait_timeout=1)
    text = p.ini_text().replace("listen_port = %d" % p.port, "listen_port = %d" % (p.port + 100))
    p.rewrite_ini(text=text)
    p.signal(signal.SIGHUP)
    assert wait_for(lambda: "listen_port" in p.log_text(off), 5), p.log_text(off)
    assert "restart" in p.log_text(off)
    assert held.query("select 1")[0] == [["1"]]     # the held connection survived the reload
    w = raw_login(p, testdb)                          # still listening on the old port
    w.send_msg(b"Q", b"select 1\0")
    expect_fatal(w, "08P01", "query_wait_timeout", within=4)   # the new timeout applies
    held.query("commit")
    held.close()


def _change_db_settings(p):
    """Rewrites the ini with an application_name on the [databases] entry (a connection setting:
    servers opened before the reload are "close_needed") and sends SIGHUP."""
    line = "* = host=127.0.0.1 port=%d" % p.pg_port
    text = p.ini_text()
    assert line in text
    p.rewrite_ini(text=text.replace(line, line + " application_name=reloaded"))
    p.signal(signal.SIGHUP)


@pgshim_only
@pytest.mark.parametrize("fast_close", [True, False])
def test_server_fast_close_in_session_mode(proxies, testdb, fast_close):
    """server_fast_close = 1, session mode, settings changed by a reload: a client whose session
    is idle is closed (FATAL 08P01 "database configuration changed") within the janitor's second,
    one inside a transaction only when that transaction ends; with 0 both sessions keep their
    servers until they end."""
    p = proxies.start_oneoff(pool_mode="session",
                             extra={"server_fast_close": "1" if fast_close else "0"})
    idle = raw_login(p, testdb)
    busy = raw_login(p, testdb)
    assert idle.query("select 1")[2] is None
    assert busy.query("begin")[2] is None
    off = p.log_size()
    _change_db_settings(p)
    assert wait_for(lambda: "reload: pool" in p.log_text(off), 5), p.log_text(off)
    if fast_close:
        expect_fatal(idle, "08P01", "database configuration changed", within=4)
        time.sleep(1.5)   # the transaction is still open: not closed
        assert busy.query("select 2")[0] == [["2"]]
        busy.send_msg(b"Q", b"commit\0")
        msgs, eof = read_until_ready_or_eof(busy)
        assert first_error(msgs) is None and not eof, msgs    # COMMIT itself completes
        expect_fatal(busy, "08P01", "database configuration changed", within=4)
    else:
        time.sleep(2.5)
        assert idle.query("select 1")[0] == [["1"]]
        assert busy.query("commit")[2] is None
        assert busy.query("select 3")[0] == [["3"]]
        idle.close()
        busy.close()
    # New sessions still work (on servers opened with the new settings).
    c = raw_login(p, testdb)
    assert c.query("select 4")[0] == [["4"]]
    c.close()


@pgshim_only
def test_reload_bad_file_keeps_old_config(proxies, testdb):
    """SIGHUP with a broken ini logs FILE:LINE and keeps the old configuration running."""
    p = proxies.start_oneoff(pool_mode="transaction")
    c = raw_login(p, testdb)
    off = p.log_size()
    good = p.ini_text()
    p.rewrite_ini(text=good + "query_timeout = soon\n")
    p.signal(signal.SIGHUP)
    line = len(good.splitlines()) + 1
    assert wait_for(lambda: "%s:%d" % (p.ini_path, line) in p.log_text(off), 5), p.log_text(off)
    assert "query_timeout" in p.log_text(off)
    assert c.query("select 1")[0] == [["1"]]
    c.close()
    assert_works(p, testdb)


@pgshim_only
def test_bad_config_at_start(tmp_path):
    """A bad option at start: non-zero exit, and the message names the file, line and option."""
    binary = proxyctl.find_pgshim_binary()
    ini = tmp_path / "bad.ini"
    ini.write_text("[databases]\n* = host=127.0.0.1\n[pgshim]\nlisten_port = 1\n"
                   "default_pool_size = lots\n")
    r = subprocess.run([binary, "-c", str(ini)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=20)
    assert r.returncode != 0
    assert "%s:5" % ini in r.stderr and "default_pool_size" in r.stderr, r.stderr


@pgshim_only
def test_sigterm_lets_transactions_finish(proxies, testdb):
    """SIGTERM: the listener closes, an idle client gets FATAL 57P01, a client inside a
    transaction may finish it (and is then closed), and the process exits by itself."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=2,
                             extra={"shutdown_wait_timeout": 20})
    idle = raw_login(p, testdb)
    busy = raw_login(p, testdb)
    assert busy.query("begin")[2] is None
    p.signal(signal.SIGTERM)
    time.sleep(0.5)
    msgs, eof = read_until_ready_or_eof(idle)
    assert first_error(msgs)["C"] == "57P01" and eof, msgs
    assert not proxyctl.wait_port("127.0.0.1", p.port, timeout=0.5)
    assert busy.query("select 1")[0] == [["1"]]
    assert busy.query("commit")[2] is None
    busy.close()
    p.proc.wait(timeout=5)
    assert p.stop() == 0      # stop() only collects the status; the fixture skips it after


@pgshim_only
def test_sigterm_bounded_by_shutdown_wait_timeout(proxies, testdb):
    """A transaction that never ends does not keep pgshim alive past shutdown_wait_timeout."""
    p = proxies.start_oneoff(pool_mode="transaction", extra={"shutdown_wait_timeout": 1})
    busy = raw_login(p, testdb)
    assert busy.query("begin")[2] is None
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    p.proc.wait(timeout=6)
    assert time.monotonic() - t0 < 4
    p.stop()
    busy.close()


@pgshim_only
def test_sigint_exits_at_once(proxies, testdb):
    p = proxies.start_oneoff(pool_mode="transaction")
    busy = raw_login(p, testdb)
    assert busy.query("begin")[2] is None
    t0 = time.monotonic()
    p.signal(signal.SIGINT)
    p.proc.wait(timeout=5)
    assert time.monotonic() - t0 < 2
    p.stop()
    busy.close()


@pgshim_only
def test_connect_disconnect_log_lines(proxies, testdb):
    """log_connections/log_disconnections: one line per login and per disconnect with the
    connection id, database, user, client address and the reason."""
    p = proxies.start_oneoff(pool_mode="transaction")
    off = p.log_size()
    c = raw_login(p, testdb)
    port = c.sock.getsockname()[1]
    c.send_msg(b"X")
    c.close()
    addr = "127.0.0.1:%d" % port
    assert wait_for(lambda: "closing because" in p.log_text(off), 3)
    lines = [l for l in p.log_text(off).splitlines() if addr in l]
    assert any("login" in l and "%s/postgres@%s" % (testdb, addr) in l for l in lines), lines
    assert any("closing because: client close request" in l for l in lines), lines
    assert all("C-" in l for l in lines), lines


@pgshim_only
def test_tcp_keepalive_options(proxies, testdb):
    """tcp_keepalive/tcp_keepidle/tcp_keepintvl: client sockets carry the keepalive timer."""
    p = proxies.start_oneoff(pool_mode="transaction",
                             extra={"tcp_keepalive": 1, "tcp_keepidle": 77, "tcp_keepintvl": 9,
                                    "tcp_keepcnt": 4})
    c = raw_login(p, testdb)
    out = subprocess.run(["ss", "-tnoH", "state", "established", "( sport = :%d )" % p.port],
                         stdout=subprocess.PIPE, text=True, timeout=10).stdout
    c.close()
    assert "keepalive" in out, out


@pgshim_only
@pytest.mark.parametrize("round_robin", [0, 1])
def test_server_round_robin(proxies, limitsdb, round_robin):
    """Two idle servers: by default the most recently used one serves every transaction; with
    server_round_robin = 1 consecutive transactions alternate between them."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=2, users={"app": "apppass"},
                             extra={"min_pool_size": 2, "server_round_robin": round_robin})
    a = raw_login(p, limitsdb, "app")
    assert a.query("select 1")[2] is None
    assert wait_for(lambda: len({a.query("select pg_backend_pid()")[0][0][0]
                                 for _ in range(4)}) == (2 if round_robin else 1), 5)
    a.close()
