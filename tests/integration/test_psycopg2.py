"""psycopg2 through the proxy: queries, parameters, transactions, errors, COPY, NOTICE, NOTIFY.

Every test runs in both pool modes unless it needs session state (LISTEN). Tables are named per
pool mode so the two parametrisations never interfere.
"""

import io
import select
import time

import psycopg2
import psycopg2.errorcodes
import pytest


@pytest.fixture
def conn(proxy, testdb):
    c = psycopg2.connect(proxy.dsn(testdb))
    yield c
    c.close()


def test_simple_queries(conn):
    cur = conn.cursor()
    cur.execute("select 1, 'two', null::int, 3.5::numeric, array[1,2]")
    assert cur.fetchone() == (1, "two", None, __import__("decimal").Decimal("3.5"), [1, 2])
    cur.execute("select g from generate_series(1, 10000) g")
    rows = cur.fetchall()
    assert len(rows) == 10000 and rows[-1] == (10000,)
    cur.execute("select repeat('x', 50000)")
    assert len(cur.fetchone()[0]) == 50000
    conn.rollback()


def test_parameters(conn):
    cur = conn.cursor()
    cur.execute("select %s::int + %s, %s, %s::text[]", (40, 2, "it's \"quoted\"", ["a", "b"]))
    assert cur.fetchone() == (42, "it's \"quoted\"", ["a", "b"])
    cur.execute("select %(a)s || %(b)s", {"a": "foo", "b": "bar"})
    assert cur.fetchone()[0] == "foobar"
    conn.rollback()


def test_transactions_commit_rollback(conn, pool_mode):
    t = "p2_txn_%s" % pool_mode
    cur = conn.cursor()
    cur.execute("drop table if exists %s; create table %s (id int primary key)" % (t, t))
    conn.commit()
    cur.execute("insert into %s values (1)" % t)
    conn.commit()
    cur.execute("insert into %s values (2)" % t)
    conn.rollback()
    cur.execute("select array_agg(id order by id) from %s" % t)
    assert cur.fetchone()[0] == [1]
    # a transaction spanning several round trips sees its own uncommitted rows
    cur.execute("insert into %s values (3)" % t)
    cur.execute("select count(*) from %s" % t)
    assert cur.fetchone()[0] == 2
    cur.execute("savepoint s1")
    cur.execute("insert into %s values (4)" % t)
    cur.execute("rollback to savepoint s1")
    conn.commit()
    cur.execute("select array_agg(id order by id) from %s" % t)
    assert cur.fetchone()[0] == [1, 3]
    cur.execute("drop table %s" % t)
    conn.commit()


@pytest.mark.parametrize("sql,sqlstate", [
    ("select 1/0", "22012"),
    ("select * from no_such_table_xyz", "42P01"),
    ("selec 1", "42601"),
    ("select 'abc'::int", "22P02"),
    ("do $$ begin raise exception using errcode = 'P0001', message = 'custom boom'; end $$", "P0001"),
])
def test_errors_pass_through(conn, sql, sqlstate):
    cur = conn.cursor()
    with pytest.raises(psycopg2.Error) as ei:
        cur.execute(sql)
    assert ei.value.pgcode == sqlstate, ei.value
    assert ei.value.diag.severity == "ERROR"
    conn.rollback()
    cur.execute("select 'still usable'")
    assert cur.fetchone()[0] == "still usable"
    conn.rollback()


def test_error_inside_transaction(conn, pool_mode):
    cur = conn.cursor()
    cur.execute("select 1")
    with pytest.raises(psycopg2.errors.DivisionByZero):
        cur.execute("select 1/0")
    with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
        cur.execute("select 2")
    conn.rollback()
    cur.execute("select 3")
    assert cur.fetchone()[0] == 3
    conn.commit()


def test_unique_violation_details(conn, pool_mode):
    t = "p2_uniq_%s" % pool_mode
    cur = conn.cursor()
    cur.execute("drop table if exists %s; create table %s (id int primary key)" % (t, t))
    cur.execute("insert into %s values (1)" % t)
    conn.commit()
    with pytest.raises(psycopg2.errors.UniqueViolation) as ei:
        cur.execute("insert into %s values (1)" % t)
    assert ei.value.diag.constraint_name == "%s_pkey" % t
    assert ei.value.diag.table_name == t
    conn.rollback()
    cur.execute("drop table %s" % t)
    conn.commit()


def test_copy_from_stdin_and_to_stdout(conn, pool_mode):
    t = "p2_copy_%s" % pool_mode
    cur = conn.cursor()
    cur.execute("drop table if exists %s; create table %s (id int, v text)" % (t, t))
    data = "".join("%d\tvalue %d with some padding to make it longer\n" % (i, i)
                   for i in range(2000))
    cur.copy_expert("copy %s from stdin" % t, io.StringIO(data))
    assert cur.rowcount == 2000
    conn.commit()
    out = io.StringIO()
    cur.copy_expert("copy (select * from %s order by id) to stdout" % t, out)
    assert out.getvalue() == data
    # a COPY that fails mid-stream reports the server's error and leaves the connection usable
    with pytest.raises(psycopg2.errors.InvalidTextRepresentation):
        cur.copy_expert("copy %s from stdin" % t, io.StringIO("1\tok\nnot-a-number\tbad\n"))
    conn.rollback()
    cur.execute("select count(*) from %s" % t)
    assert cur.fetchone()[0] == 2000
    cur.execute("drop table %s" % t)
    conn.commit()


@pytest.mark.watchdog(25)
@pytest.mark.parametrize("size", [1 << 20, 16 << 20])
def test_large_result(conn, size):
    """Results far above the proxy's buffer high-water mark (backpressure must resume)."""
    cur = conn.cursor()
    cur.execute("select repeat('x', %s)", (size,))
    assert len(cur.fetchone()[0]) == size
    cur.execute("select g, repeat('y', 100) from generate_series(1, 100000) g")
    assert len(cur.fetchall()) == 100000
    conn.rollback()


@pytest.mark.watchdog(25)
def test_large_copy_in_and_out(conn, pool_mode):
    """COPY of ~10 MB each way: the proxy must keep streaming when one side is slower."""
    t = "p2_bigcopy_%s" % pool_mode
    cur = conn.cursor()
    cur.execute("drop table if exists %s; create table %s (id int, v text)" % (t, t))
    data = "".join("%d\t%s\n" % (i, "z" * 100) for i in range(100000))
    cur.copy_expert("copy %s from stdin" % t, io.StringIO(data))
    assert cur.rowcount == 100000
    conn.commit()
    out = io.StringIO()
    cur.copy_expert("copy (select * from %s order by id) to stdout" % t, out)
    assert out.getvalue() == data
    cur.execute("drop table %s" % t)
    conn.commit()


def test_notice_reaches_client(conn):
    cur = conn.cursor()
    cur.execute("do $$ begin raise notice 'hello from the server %', 42; end $$")
    assert any("hello from the server 42" in n for n in conn.notices), conn.notices
    assert conn.notices[-1].startswith("NOTICE:")
    cur.execute("set client_min_messages = warning")
    cur.execute("do $$ begin raise warning 'careful'; end $$")
    assert any(n.startswith("WARNING:") and "careful" in n for n in conn.notices)
    conn.rollback()


def test_listen_notify_session_mode(session_proxy, testdb):
    listener = psycopg2.connect(session_proxy.dsn(testdb))
    listener.autocommit = True
    sender = psycopg2.connect(session_proxy.dsn(testdb))
    sender.autocommit = True
    try:
        listener.cursor().execute("listen pgshim_it_chan")
        sender.cursor().execute("notify pgshim_it_chan, 'payload-1'")
        sender.cursor().execute("select pg_notify('pgshim_it_chan', 'payload-2')")
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            if select.select([listener], [], [], 0.5)[0]:
                listener.poll()
                while listener.notifies:
                    got.append(listener.notifies.pop(0))
        assert [n.payload for n in got] == ["payload-1", "payload-2"]
        assert all(n.channel == "pgshim_it_chan" for n in got)
    finally:
        listener.close()
        sender.close()
