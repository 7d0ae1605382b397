"""psycopg 3 through the proxy: default extended protocol, pipelines, COPY.

In transaction mode prepare_threshold=None, because protocol-level named prepared statements in
transaction mode arrive with issue 3; in session mode psycopg's default automatic preparation is
left on and exercised (the same query more than prepare_threshold times).
"""

import psycopg
import pytest


@pytest.fixture
def aconn(proxy, testdb, pool_mode):
    kw = {"prepare_threshold": None} if pool_mode == "transaction" else {}
    c = psycopg.connect(proxy.dsn(testdb), **kw)
    yield c
    c.close()


def test_extended_queries_and_params(aconn):
    cur = aconn.cursor()
    cur.execute("select %s::int + %s::int, %s::text, %s::int[]", (40, 2, "x'y", [1, 2, 3]))
    assert cur.fetchone() == (42, "x'y", [1, 2, 3])
    for i in range(10):   # beyond the default prepare_threshold (5) in session mode
        cur.execute("select %s::int * 2", (i,))
        assert cur.fetchone()[0] == i * 2
    cur.execute("select %(a)s::text || %(b)s::text", {"a": "foo", "b": "bar"})
    assert cur.fetchone()[0] == "foobar"
    cur.execute("select g, md5(g::text) from generate_series(1, 5000) g")
    assert len(cur.fetchall()) == 5000
    # binary results
    cur = aconn.cursor(binary=True)
    cur.execute("select %s::bigint, %s::float8", (2 ** 40, 1.5))
    assert cur.fetchone() == (2 ** 40, 1.5)
    aconn.rollback()


def test_transactions_and_errors(aconn, pool_mode):
    t = "p3_txn_%s" % pool_mode
    aconn.execute("drop table if exists %s" % t)
    aconn.execute("create table %s (id int primary key)" % t)
    aconn.commit()
    with aconn.transaction():
        aconn.execute("insert into %s values (%%s)" % t, (1,))
    with pytest.raises(psycopg.errors.UniqueViolation) as ei:
        with aconn.transaction():
            aconn.execute("insert into %s values (%%s)" % t, (2,))
            aconn.execute("insert into %s values (%%s)" % t, (1,))
    assert ei.value.sqlstate == "23505"
    assert aconn.execute("select array_agg(id) from %s" % t).fetchone()[0] == [1]
    with pytest.raises(psycopg.errors.DivisionByZero):
        aconn.execute("select 1/%s::int", (0,))
    aconn.rollback()
    assert aconn.execute("select 'ok'").fetchone()[0] == "ok"
    aconn.execute("drop table %s" % t)
    aconn.commit()


def test_pipeline(aconn, pool_mode):
    t = "p3_pipe_%s" % pool_mode
    aconn.autocommit = True
    aconn.execute("drop table if exists %s" % t)
    aconn.execute("create table %s (id int primary key, v text)" % t)
    with aconn.pipeline():
        cur = aconn.cursor()
        cur.executemany("insert into %s values (%%s, %%s)" % t, [(i, "v%d" % i) for i in range(500)])
        c1 = aconn.execute("select count(*) from %s" % t)
        c2 = aconn.execute("select max(id) from %s" % t)
    assert c1.fetchone()[0] == 500 and c2.fetchone()[0] == 499
    # an error aborts the statements up to the next Sync only: the first insert is committed
    # by its own Sync, the one after the error is skipped
    with pytest.raises(psycopg.errors.UniqueViolation):
        with aconn.pipeline() as p:
            aconn.execute("insert into %s values (%%s, %%s)" % t, (1000, "a"))
            p.sync()
            aconn.execute("insert into %s values (%%s, %%s)" % t, (1, "dup"))
            aconn.execute("insert into %s values (%%s, %%s)" % t, (1001, "b"))
    assert aconn.execute("select count(*) from %s" % t).fetchone()[0] == 501
    aconn.execute("drop table %s" % t)


def test_copy(aconn, pool_mode):
    t = "p3_copy_%s" % pool_mode
    aconn.execute("drop table if exists %s" % t)
    aconn.execute("create table %s (id int, v text, n numeric)" % t)
    cur = aconn.cursor()
    with cur.copy("copy %s (id, v, n) from stdin" % t) as cp:
        for i in range(10000):
            cp.write_row((i, "row %d" % i, i / 4))
    aconn.commit()
    rows = []
    with cur.copy("copy (select id, v from %s order by id) to stdout" % t) as cp:
        for row in cp.rows():
            rows.append(row)
    assert len(rows) == 10000 and rows[1234] == ("1234", "row 1234")
    # binary copy out
    with cur.copy("copy (select id from %s where id < 10 order by id) to stdout (format binary)" % t) as cp:
        cp.set_types(["int4"])
        assert [r[0] for r in cp.rows()] == list(range(10))
    aconn.execute("drop table %s" % t)
    aconn.commit()


def test_notice_handler(aconn):
    got = []
    aconn.add_notice_handler(lambda d: got.append((d.severity, d.sqlstate, d.message_primary)))
    aconn.execute("do $$ begin raise notice 'psycopg3 notice %', 7; end $$")
    assert ("NOTICE", "00000", "psycopg3 notice 7") in got
    aconn.rollback()
