"""Named prepared statements in transaction pooling mode (issue 3, max_prepared_statements).

A client's protocol-level named statements must work whatever server connection the pool gives
it: pgshim maps the client's names to statements it prepares on each server as needed. The
tests make statements cross server connections on purpose: a small pool, and a second client
that holds the server the first one used (BEGIN), so the next transaction of the first client
must run elsewhere (checked with pg_backend_pid()).

Covered: psycopg 3 automatic preparation with 50 clients on a pool of 5, its DEALLOCATE
eviction, pgbench -M prepared, and raw protocol cases (duplicate names, Close and re-Parse,
Describe, unknown names, DEALLOCATE, an error in a pipelined batch before an injected Parse,
two clients with the same name, eviction with a small bound, the option off).
"""

import os
import struct
import subprocess
import threading

import psycopg
import psycopg2
import pytest

import pgwire
from conftest import is_pgbouncer

pytestmark = pytest.mark.skipif(is_pgbouncer(), reason="pgshim's prepared statement tracking")


def _proxy(proxies, pool_size=2, max_ps=None):
    extra = {}
    if max_ps is not None:
        extra["max_prepared_statements"] = str(max_ps)
    return proxies.start_oneoff(pool_mode="transaction", pool_size=pool_size, extra=extra)


# ---- raw extended protocol ----

def _cstr(s):
    return s.encode() + b"\0"


class Ext:
    """A pgwire connection with extended-protocol helpers. Messages are only queued by the
    helpers; flush() sends them, read_until_ready() collects the replies."""

    def __init__(self, proxy, db):
        self.c = pgwire.Conn("127.0.0.1", proxy.port)
        err = self.c.startup("postgres", db, password=proxy.users["postgres"])
        assert err is None, err
        self.out = b""

    def msg(self, t, payload=b""):
        self.out += t + struct.pack("!I", len(payload) + 4) + payload
        return self

    def parse(self, name, sql, oids=()):
        return self.msg(b"P", _cstr(name) + _cstr(sql) + struct.pack("!H", len(oids)) +
                        b"".join(struct.pack("!I", o) for o in oids))

    def bind(self, stmt, params=(), portal=""):
        body = _cstr(portal) + _cstr(stmt) + struct.pack("!H", 0) + struct.pack("!H", len(params))
        for p in params:
            if p is None:
                body += struct.pack("!i", -1)
            else:
                v = str(p).encode()
                body += struct.pack("!i", len(v)) + v
        return self.msg(b"B", body + struct.pack("!H", 0))

    def describe(self, kind, name):
        return self.msg(b"D", kind.encode() + _cstr(name))

    def execute(self, portal="", max_rows=0):
        return self.msg(b"E", _cstr(portal) + struct.pack("!I", max_rows))

    def close_stmt(self, name):
        return self.msg(b"C", b"S" + _cstr(name))

    def sync(self):
        return self.msg(b"S")

    def query(self, sql):
        return self.msg(b"Q", _cstr(sql))

    def flush(self):
        self.c.send(self.out)
        self.out = b""

    def read_until_ready(self, n_ready=1):
        """Replies up to the n-th ReadyForQuery: list of (type char, decoded payload)."""
        got = []
        while True:
            t, p = self.c.read_msg()
            t = t.decode()
            if t in "NS":
                continue
            if t == "D":
                (n,) = struct.unpack("!H", p[:2])
                i, row = 2, []
                for _ in range(n):
                    (ln,) = struct.unpack("!i", p[i:i + 4])
                    i += 4
                    row.append(None if ln < 0 else p[i:i + ln].decode())
                    i += max(ln, 0)
                got.append((t, row))
            elif t in "EN":
                got.append((t, pgwire.error_fields(p)))
            elif t == "C":
                got.append((t, p.rstrip(b"\0").decode()))
            elif t == "Z":
                got.append((t, p.decode()))
                n_ready -= 1
                if n_ready == 0:
                    return got
            elif t == "t":
                (n,) = struct.unpack("!H", p[:2])
                got.append((t, list(struct.unpack("!%dI" % n, p[2:2 + 4 * n]))))
            elif t == "T":
                (n,) = struct.unpack("!H", p[:2])
                names, i = [], 2
                for _ in range(n):
                    end = p.index(b"\0", i)
                    names.append(p[i:end].decode())
                    i = end + 1 + 18
                got.append((t, names))
            else:
                got.append((t, None))

    def run(self, n_ready=1):
        self.flush()
        return self.read_until_ready(n_ready)

    def simple(self, sql):
        return self.query(sql).run()

    def close(self):
        self.c.close()


def types(replies):
    return "".join(t for t, _ in replies)


def rows(replies):
    return [v for t, v in replies if t == "D"]


def errors(replies):
    return [v for t, v in replies if t == "E"]


@pytest.fixture
def two(proxies, testdb):
    """A transaction-mode pgshim with a pool of 2 and two raw clients."""
    p = _proxy(proxies, pool_size=2)
    a, b = Ext(p, testdb), Ext(p, testdb)
    yield p, a, b
    a.close()
    b.close()


PID_SQL = "select $1::int + 1, pg_backend_pid()::text"


def _hold_last_server(b):
    """b starts a transaction on the most recently used idle server (LIFO) and keeps it."""
    r = b.simple("begin")
    assert types(r) == "CZ" and r[-1][1] == "T", r


@pytest.mark.watchdog(30)
def test_statement_follows_client_to_another_server(two):
    _, a, b = two
    r = a.parse("s1", PID_SQL, [23]).sync().run()
    assert types(r) == "1Z", r
    r = a.bind("s1", [1]).execute().sync().run()
    assert types(r) == "2DCZ", r
    pid1 = rows(r)[0][1]
    _hold_last_server(b)
    r = a.bind("s1", [41]).execute().sync().run()
    assert types(r) == "2DCZ", r
    assert rows(r)[0][0] == "42"
    assert rows(r)[0][1] != pid1, "expected the statement to run on another server connection"
    # Describe of the statement on a server that may not have it yet.
    b.simple("commit")
    _hold_last_server(b)
    r = a.describe("S", "s1").sync().run()
    assert r[0] == ("t", [23]) and r[1] == ("T", ["?column?", "pg_backend_pid"]) and types(r) == "tTZ", r


@pytest.mark.watchdog(30)
def test_duplicate_name_is_42P05_and_skips_to_sync(two):
    _, a, _ = two
    assert types(a.parse("dup", "select 1").sync().run()) == "1Z"
    r = a.parse("dup", "select 2").bind("dup").execute().sync().run()
    assert types(r) == "EZ", r
    e = errors(r)[0]
    assert e["C"] == "42P05" and e["M"] == 'prepared statement "dup" already exists', e
    assert r[-1][1] == "I"
    # Still usable, and the name still means the first statement.
    r = a.bind("dup").execute().sync().run()
    assert types(r) == "2DCZ" and rows(r) == [["1"]], r
    # Inside a transaction block the duplicate fails the transaction, as in PostgreSQL.
    assert types(a.simple("begin")) == "CZ"
    r = a.parse("dup", "select 3").sync().run()
    assert types(r) == "EZ" and r[-1][1] == "E", r
    r = a.simple("rollback")
    assert r[-1][1] == "I", r


@pytest.mark.watchdog(30)
def test_close_then_reparse_with_other_sql(two):
    _, a, b = two
    assert types(a.parse("cr", "select 'old'::text").sync().run()) == "1Z"
    r = a.close_stmt("cr").sync().run()
    assert types(r) == "3Z", r
    r = a.close_stmt("never_prepared").sync().run()
    assert types(r) == "3Z", r   # PostgreSQL: closing a missing name is not an error
    r = a.parse("cr", "select 'new'::text").bind("cr").execute().sync().run()
    assert types(r) == "12DCZ" and rows(r) == [["new"]], r
    _hold_last_server(b)
    r = a.bind("cr").execute().sync().run()
    assert rows(r) == [["new"]], r


@pytest.mark.watchdog(30)
def test_unknown_name_gets_postgres_error(two):
    _, a, _ = two
    r = a.bind("nosuch").execute().sync().run()
    assert types(r) == "EZ", r
    e = errors(r)[0]
    assert e["C"] == "26000" and e["M"] == 'prepared statement "nosuch" does not exist', e
    r = a.describe("S", "nosuch2").sync().run()
    assert errors(r)[0]["C"] == "26000" and "nosuch2" in errors(r)[0]["M"], r


@pytest.mark.watchdog(30)
def test_deallocate_via_query(two):
    _, a, b = two
    assert types(a.parse("d1", "select 10").parse("d2", "select 20").sync().run()) == "11Z"
    r = a.simple("DEALLOCATE d1")
    assert r == [("C", "DEALLOCATE"), ("Z", "I")], r
    r = a.bind("d1").execute().sync().run()
    assert errors(r) and errors(r)[0]["C"] == "26000", r
    r = a.parse("d1", "select 11").bind("d1").execute().sync().run()
    assert rows(r) == [["11"]], r
    # In a transaction: the status in the answer is the transaction's.
    assert types(a.simple("begin")) == "CZ"
    r = a.simple("deallocate prepare d1;")
    assert r == [("C", "DEALLOCATE"), ("Z", "T")], r
    assert a.simple("commit")[-1] == ("Z", "I")
    r = a.simple("DEALLOCATE ALL")
    assert r == [("C", "DEALLOCATE ALL"), ("Z", "I")], r
    r = a.bind("d2").execute().sync().run()
    assert errors(r) and errors(r)[0]["C"] == "26000", r
    # A name that is not tracked goes to PostgreSQL, which names it in its error.
    r = a.simple("DEALLOCATE not_there")
    assert errors(r)[0]["C"] == "26000" and "not_there" in errors(r)[0]["M"], r
    _hold_last_server(b)
    r = a.parse("d2", "select 21").bind("d2").execute().sync().run()
    assert rows(r) == [["21"]], r


# random() keeps the planner from folding the division at Bind: the error comes from Execute.
DIV_SQL = "select 1 / ($1::int + (random() * 0)::int)"


@pytest.mark.watchdog(30)
def test_error_in_pipeline_before_injected_parse(two):
    _, a, b = two
    assert types(a.parse("pe", PID_SQL, [23]).sync().run()) == "1Z"
    pid1 = rows(a.bind("pe", [0]).execute().sync().run())[0][1]
    _hold_last_server(b)
    # On another server: the failing Execute makes PostgreSQL skip the rest of the batch,
    # including the Parse pgshim puts in front of the Bind of "pe".
    r = (a.parse("", DIV_SQL, [23]).bind("", [0]).execute()
         .bind("pe", [5]).execute().sync().run())
    assert types(r) == "12EZ", r
    assert errors(r)[0]["C"] == "22012"
    r = a.bind("pe", [5]).execute().sync().run()
    assert types(r) == "2DCZ" and rows(r)[0][0] == "6", r
    assert rows(r)[0][1] != pid1
    # Two batches in one write, the first failing: the second is answered in full.
    r = (a.bind("pe", [1]).execute().parse("", DIV_SQL, [23]).bind("", [0]).execute().sync()
         .bind("pe", [2]).execute().sync().run(n_ready=2))
    assert types(r) == "2DC12EZ2DCZ", r
    assert [row[0] for row in rows(r)] == ["2", "3"]


@pytest.mark.watchdog(30)
def test_two_clients_same_name_different_sql(two):
    _, a, b = two
    assert types(a.parse("same", "select 'from a'::text").sync().run()) == "1Z"
    assert types(b.parse("same", "select 'from b'::text").sync().run()) == "1Z"
    for _ in range(3):
        assert rows(a.bind("same").execute().sync().run()) == [["from a"]]
        assert rows(b.bind("same").execute().sync().run()) == [["from b"]]
    # The same text prepared by two clients under different names shares one statement.
    r = a.parse("a2", "select 'from b'::text").bind("a2").execute().sync().run()
    assert types(r) == "12DCZ" and rows(r) == [["from b"]], r


@pytest.mark.watchdog(30)
def test_prepared_inside_transaction_used_after_commit(two):
    _, a, b = two
    assert types(a.simple("begin")) == "CZ"
    r = a.parse("intx", PID_SQL, [23]).bind("intx", [1]).execute().sync().run()
    assert types(r) == "12DCZ" and r[-1][1] == "T", r
    pid1 = rows(r)[0][1]
    assert a.simple("commit")[-1] == ("Z", "I")
    _hold_last_server(b)
    r = a.bind("intx", [2]).execute().sync().run()
    assert rows(r)[0][0] == "3" and rows(r)[0][1] != pid1, r


@pytest.mark.watchdog(40)
def test_small_bound_evicts_and_stays_right(proxies, testdb):
    p = _proxy(proxies, pool_size=1, max_ps=2)
    a = Ext(p, testdb)
    try:
        for i in range(5):
            r = a.parse("rot%d" % i, "select %d + $1::int" % (i * 100), [23]).sync().run()
            assert types(r) == "1Z", r
        for rnd in range(3):
            for i in range(5):
                r = a.bind("rot%d" % i, [rnd]).execute().sync().run()
                assert types(r) == "2DCZ" and rows(r) == [[str(i * 100 + rnd)]], r
        # Several statements in one batch: none evicted while the batch needs it.
        for i in range(5):
            a.bind("rot%d" % i, [7]).execute()
        r = a.sync().run()
        assert [row[0] for row in rows(r)] == [str(i * 100 + 7) for i in range(5)], r
        r = a.simple("select count(*) from pg_prepared_statements where name like 'PGSHIM%'")
        assert int(rows(r)[0][0]) <= 5, r
        # The next Parse brings the server back within the bound.
        r = a.parse("rot5", "select 500 + $1::int", [23]).bind("rot5", [1]).execute().sync().run()
        assert rows(r) == [["501"]], r
        r = a.simple("select count(*) from pg_prepared_statements where name like 'PGSHIM%'")
        assert int(rows(r)[0][0]) <= 2, r
        r = a.bind("rot0", [1]).execute().sync().run()
        assert rows(r) == [["1"]], r
    finally:
        a.close()


@pytest.mark.watchdog(30)
def test_option_zero_passes_names_through(proxies, testdb):
    p = _proxy(proxies, pool_size=2, max_ps=0)
    a, b = Ext(p, testdb), Ext(p, testdb)
    try:
        r = a.parse("raw", PID_SQL, [23]).bind("raw", [1]).execute().sync().run()
        assert types(r) == "12DCZ", r
        # The name reaches PostgreSQL as the client wrote it.
        r = a.simple("select count(*) from pg_prepared_statements where name = 'raw'")
        assert rows(r) == [["1"]], r
        _hold_last_server(b)
        r = a.bind("raw", [1]).execute().sync().run()
        assert types(r) == "EZ" and errors(r)[0]["C"] == "26000", r
        assert errors(r)[0]["M"] == 'prepared statement "raw" does not exist'
    finally:
        a.close()
        b.close()


@pytest.mark.watchdog(30)
def test_discard_all_forgets_names(two):
    _, a, b = two
    assert types(a.parse("dsc", "select 5").sync().run()) == "1Z"
    r = a.simple("DISCARD ALL")
    assert types(r) == "CZ", r
    r = a.parse("dsc", "select 6").bind("dsc").execute().sync().run()
    assert types(r) == "12DCZ" and rows(r) == [["6"]], r
    # Its server may still hold statements pgshim had forgotten: preparing them again works.
    r = b.parse("other", "select 5").bind("other").execute().sync().run()
    assert rows(r) == [["5"]], r


# ---- psycopg 3 and pgbench ----

@pytest.mark.watchdog(90)
def test_psycopg3_auto_prepare_many_clients(proxies, testdb):
    """The issue's acceptance: 50 clients, 20 executions each of the same parameterised query
    with automatic preparation, on a pool of 5."""
    p = _proxy(proxies, pool_size=5)
    errors_seen, prepared_seen = [], []
    start = threading.Barrier(50)

    def worker(k):
        try:
            with psycopg.connect(p.dsn(testdb), prepare_threshold=2, autocommit=True) as conn:
                start.wait(timeout=30)
                for i in range(20):
                    row = conn.execute("select %s::int * 3, %s::text || 'x'", (k * 100 + i, str(i))).fetchone()
                    assert row == ((k * 100 + i) * 3, "%dx" % i), row
                    if i % 5 == 4:
                        with conn.transaction():
                            row = conn.execute("select %s::int + 1", (i,)).fetchone()
                            assert row == (i + 1,)
                            row = conn.execute("select %s::int + 1", (i + 1,)).fetchone()
                            assert row == (i + 2,)
                n = conn.execute("select count(*) from pg_prepared_statements "
                                 "where name like 'PGSHIM%%'").fetchone()[0]
                prepared_seen.append(n)
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors_seen.append("%d: %r" % (k, e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(80)
    assert not errors_seen, errors_seen[:5]
    assert len(prepared_seen) == 50
    assert max(prepared_seen) >= 1, "psycopg's statements were not prepared by pgshim"


@pytest.mark.watchdog(60)
def test_psycopg3_deallocate_eviction(proxies, testdb):
    """psycopg 3.1 evicts its own cache with DEALLOCATE (simple Query) in transaction mode."""
    p = _proxy(proxies, pool_size=2)
    with psycopg.connect(p.dsn(testdb), prepare_threshold=0, autocommit=True) as conn:
        conn.prepared_max = 3
        for rnd in range(4):
            for i in range(8):
                row = conn.execute("select %%s::int + %d" % i, (rnd,)).fetchone()
                assert row == (rnd + i,)
        with conn.transaction():
            for i in range(8):
                assert conn.execute("select %%s::int + %d" % i, (1,)).fetchone() == (1 + i,)


def _pgbench(proxy, db, *args, timeout=120):
    env = dict(os.environ, PGPASSWORD=proxy.users["postgres"], PGCONNECT_TIMEOUT="10")
    argv = ["pgbench", "-h", "127.0.0.1", "-p", str(proxy.port), "-U", "postgres"] + list(args) + [db]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, timeout=timeout)


@pytest.mark.watchdog(120)
def test_pgbench_prepared_small_pool(proxies, pgenv):
    db = "pgshim_it_bench_ps"
    conn = psycopg2.connect(pgenv.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select 1 from pg_database where datname = %s", (db,))
        if not cur.fetchone():
            cur.execute("create database %s" % db)
    conn.close()
    env = dict(os.environ, PGPASSWORD="postgres")
    r = subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p",
                        str(pgenv.pg_port), "-U", "postgres", db], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=100)
    assert r.returncode == 0, r.stdout
    p = _proxy(proxies, pool_size=3)
    # One thread per client: pgbench prepares with a blocking PQprepare, so a client of a thread
    # waiting for a server would stall the thread's other clients, which hold all of them.
    r = _pgbench(p, db, "-n", "-M", "prepared", "-c", "8", "-j", "8", "-t", "100", timeout=100)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "number of transactions actually processed: 800/800" in out, out
    assert "error" not in r.stderr.lower(), out
