"""Pool behaviour: 200 clients on 10 server connections, cancel, per-client parameters, reset.

pg_stat_activity is read over a direct connection to PostgreSQL (database postgres) so the
monitor itself never counts as a proxy connection.
"""

import threading
import time

import psycopg2
import pytest


def _count_db_backends(mon, db):
    with mon.cursor() as cur:
        cur.execute("select count(*) from pg_stat_activity where datname = %s "
                    "and backend_type = 'client backend'", (db,))
        return cur.fetchone()[0]


@pytest.fixture
def concdb(pgenv):
    name = "pgshim_it_conc"
    conn = psycopg2.connect(pgenv.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("drop database if exists %s with (force)" % name)
        cur.execute("create database %s" % name)
    yield name, conn
    conn.close()


def test_200_clients_on_pool_of_10(proxies, concdb):
    db, mon = concdb
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=10, max_client_conn=400)
    setup = psycopg2.connect(p.dsn(db))
    with setup.cursor() as cur:
        cur.execute("create table hits (client int, n int)")
    setup.commit()
    setup.close()

    n_clients, n_txn = 200, 5
    errors, done = [], []
    start = threading.Barrier(n_clients + 1)
    stop_polling = threading.Event()
    peak = [0]

    def client(i):
        try:
            c = psycopg2.connect(p.dsn(db))
            start.wait(timeout=60)
            with c.cursor() as cur:
                for j in range(n_txn):
                    cur.execute("insert into hits values (%s, %s)", (i, j))
                    cur.execute("select pg_sleep(0.005), count(*) from hits where client = %s", (i,))
                    assert cur.fetchone()[1] == j + 1
                    c.commit()
            c.close()
            done.append(i)
        except Exception as e:   # noqa: BLE001 - every failure is reported below
            errors.append((i, repr(e)))
            try:
                start.abort()
            except Exception:
                pass

    def poll():
        while not stop_polling.is_set():
            peak[0] = max(peak[0], _count_db_backends(mon, db))
            time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    poller = threading.Thread(target=poll)
    poller.start()
    try:
        start.wait(timeout=60)
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join(timeout=80)
    stop_polling.set()
    poller.join()
    assert not errors, errors[:5]
    assert len(done) == n_clients
    assert 0 < peak[0] <= 10, "peak server connections %d" % peak[0]
    check = psycopg2.connect(p.dsn(db))
    with check.cursor() as cur:
        cur.execute("select count(*), count(distinct client) from hits")
        assert cur.fetchone() == (n_clients * n_txn, n_clients)
    check.close()


def test_cancel_pg_sleep(proxy, testdb):
    c = psycopg2.connect(proxy.dsn(testdb))
    result = {}

    def run():
        try:
            with c.cursor() as cur:
                cur.execute("select pg_sleep(30)")
            result["ok"] = True
        except Exception as e:   # noqa: BLE001
            result["err"] = e
        result["t"] = time.monotonic()

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.7)
    t0 = time.monotonic()
    c.cancel()
    th.join(timeout=10)
    assert not th.is_alive(), "query still running 10 s after cancel"
    assert "err" in result, "pg_sleep(30) completed without being cancelled"
    assert isinstance(result["err"], psycopg2.errors.QueryCanceled), repr(result["err"])
    assert result["err"].pgcode == "57014"
    assert result["t"] - t0 < 1.0, "cancel took %.2fs" % (result["t"] - t0)
    c.rollback()
    with c.cursor() as cur:
        cur.execute("select 'alive after cancel'")
        assert cur.fetchone()[0] == "alive after cancel"
    c.close()


def test_cancel_does_not_hit_other_clients(proxy, testdb):
    """A cancel of an idle client must not cancel another client's running query."""
    idle = psycopg2.connect(proxy.dsn(testdb))
    busy = psycopg2.connect(proxy.dsn(testdb))
    res = {}

    def run():
        try:
            with busy.cursor() as cur:
                cur.execute("select pg_sleep(1.5), 'done'")
                res["v"] = cur.fetchone()[1]
        except Exception as e:   # noqa: BLE001
            res["err"] = repr(e)

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.4)
    idle.cancel()
    th.join(timeout=10)
    assert res == {"v": "done"}, res
    idle.close()
    busy.close()


def _show(conn, name):
    with conn.cursor() as cur:
        cur.execute("show %s" % name)
        return cur.fetchone()[0]


def _pid(conn):
    with conn.cursor() as cur:
        cur.execute("select pg_backend_pid()")
        return cur.fetchone()[0]


def _hold(conn):
    """Opens a transaction on conn (so it keeps its server connection); returns the backend pid."""
    conn.autocommit = False
    return _pid(conn)


def _release(conn):
    conn.rollback()
    conn.autocommit = True


def _hold_all_but(c, d, pid):
    """With a pool of 2, leaves exactly the server connection `pid` idle (or, if pid is None,
    the one not in use) and returns the holder(s) to release later."""
    if _hold(c) != pid:
        return [c]
    if _hold(d) == pid:
        raise AssertionError("two transactions got the same server connection")
    _release(c)
    return [d]


def _hold_exactly(c, d, pid):
    """Holds the server connection `pid` (and nothing else) with c or d; returns the holder."""
    if _hold(c) == pid:
        return [c]
    if _hold(d) != pid:
        raise AssertionError("pool of 2 has a third server connection")
    _release(c)
    return [d]


def test_session_parameters_are_per_client(proxies, testdb):
    """Transaction mode: a SET TimeZone by A neither leaks to B on the same server connection
    nor gets lost when A is moved to another server connection."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=2)
    a, b, c, d = [psycopg2.connect(p.dsn(testdb)) for _ in range(4)]
    for x in (a, b, c, d):
        x.autocommit = True
    # make sure both server connections exist
    pc, pd = _hold(c), _hold(d)
    assert pc != pd
    _release(c)
    _release(d)
    default_tz = _show(b, "TimeZone")
    assert default_tz != "Asia/Kolkata"

    with a.cursor() as cur:   # one Query message: SETs and the pid come from one server
        cur.execute("set TimeZone = 'Asia/Kolkata'; set DateStyle = 'SQL, DMY'; "
                    "select pg_backend_pid()")
        pid_a = cur.fetchone()[0]

    holders = _hold_all_but(c, d, pid_a)
    with b.cursor() as cur:
        cur.execute("select pg_backend_pid(), current_setting('TimeZone'), current_setting('DateStyle')")
        pid_b, tz_b, ds_b = cur.fetchone()
    for x in holders:
        _release(x)
    assert pid_b == pid_a, "B did not get A's server connection"
    assert tz_b == default_tz, "B sees A's TimeZone %r" % tz_b
    assert ds_b == "ISO, MDY", "B sees A's DateStyle %r" % ds_b

    holders = _hold_exactly(c, d, pid_a)
    with a.cursor() as cur:
        cur.execute("select pg_backend_pid(), current_setting('TimeZone'), current_setting('DateStyle')")
        pid_a2, tz_a2, ds_a2 = cur.fetchone()
    for x in holders:
        _release(x)
    assert pid_a2 != pid_a, "A was not moved to another server connection"
    assert tz_a2 == "Asia/Kolkata"
    assert ds_a2 == "SQL, DMY"
    # and B, back on whatever connection, still sees its own defaults
    assert _show(b, "TimeZone") == default_tz
    for x in (a, b, c, d):
        x.close()


def test_discard_all_between_session_clients(proxies, testdb):
    """Session mode: the next client of a server connection sees no temp table, SET or prepared
    statement of the previous one."""
    p = proxies.start_oneoff(pool_mode="session", pool_size=1)
    first = psycopg2.connect(p.dsn(testdb))
    first.autocommit = True
    with first.cursor() as cur:
        cur.execute("create temp table leftover (x int)")
        cur.execute("insert into leftover values (1)")
        cur.execute("prepare leftover_stmt as select 1")
        cur.execute("set work_mem = '7MB'")
        cur.execute("select pg_backend_pid()")
        pid1 = cur.fetchone()[0]
    first.close()
    time.sleep(0.2)
    second = psycopg2.connect(p.dsn(testdb))
    second.autocommit = True
    with second.cursor() as cur:
        cur.execute("select pg_backend_pid()")
        assert cur.fetchone()[0] == pid1, "pool of 1 did not reuse the server connection"
        cur.execute("select to_regclass('pg_temp.leftover')")
        assert cur.fetchone()[0] is None
        with pytest.raises(psycopg2.errors.UndefinedTable):
            cur.execute("select * from leftover")
        cur.execute("select count(*) from pg_prepared_statements")
        assert cur.fetchone()[0] == 0
        cur.execute("show work_mem")
        assert cur.fetchone()[0] != "7MB"
    second.close()


def test_application_name_per_client(proxies, testdb):
    """Transaction mode, one server connection: each client sees its own application_name."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=1)
    conns = [psycopg2.connect(p.dsn(testdb, application_name="client_%d" % i)) for i in range(3)]
    try:
        for _ in range(2):
            for i, c in enumerate(conns):
                c.autocommit = True
                with c.cursor() as cur:
                    cur.execute("select current_setting('application_name')")
                    assert cur.fetchone()[0] == "client_%d" % i
    finally:
        for c in conns:
            c.close()


def test_client_abort_mid_transaction_leaves_no_state(proxies, testdb, pgdirect):
    """Transaction mode: a client that vanishes inside a transaction does not pass an open
    transaction or its uncommitted rows to the next client of that server connection."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=1)
    with pgdirect.cursor() as cur:
        cur.execute("drop table if exists abort_mid; create table abort_mid (x int)")
    a = psycopg2.connect(p.dsn(testdb))
    with a.cursor() as cur:
        cur.execute("insert into abort_mid values (1)")   # psycopg2 opened a transaction
        cur.execute("select pg_backend_pid()")
        pid_a = cur.fetchone()[0]
    a.close()   # Terminate while the transaction is open
    b = psycopg2.connect(p.dsn(testdb))
    b.autocommit = True
    with b.cursor() as cur:
        cur.execute("select count(*), pg_backend_pid(), txid_current_if_assigned() from abort_mid")
        n, pid_b, xid = cur.fetchone()
        assert n == 0
        assert xid is None
        cur.execute("begin")
        cur.execute("commit")
    assert not any("already a transaction" in x for x in b.notices), b.notices
    b.close()
    del pid_a, pid_b
