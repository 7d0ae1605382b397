"""In-memory data of the native path (proxy/native.c "memos"): the capability query's answer and
the group memberships of the job functions, held beside the BU tree when native_butree_ttl > 0.

ARCHITECTURE.md "Native data access" allows such data only if no stale answer is possible after a
write pgshim saw commit. These tests write through pgshim and compare the very next call with
PostgreSQL's own answer, so they fail if a memo outlives a write, whether or not the build at
hand holds the memo (it does only for tables intercept.c reports, px_native_reported_tables).
Helpers and fixtures come from test_intercept.py (same tenant databases, same comparison).

Invariants: every row a test changes is restored in a finally block through a direct connection.
"""

import psycopg2
import pytest

import conftest
from test_intercept import CAPS_FILE, _oneoff, run_pg2

pytestmark = pytest.mark.skipif(conftest.is_pgbouncer(), reason="pgshim-only feature")


def _connect(pgenv, p, db):
    direct = psycopg2.connect(pgenv.dsn(db))
    via = psycopg2.connect(p.dsn(db))
    for c in (direct, via):
        c.autocommit = True
        c.cursor().execute("SET TimeZone = 'UTC'")
    return direct, via


def test_capability_write_is_seen_at_once(proxies, pgenv):
    p = _oneoff(proxies, pgenv, "native", native_butree_ttl="60")
    direct, via = _connect(pgenv, p, "tenant_a")
    with open(CAPS_FILE) as f:
        caps = ("get_web_caps_for_client", f.read(), None)
    dc = direct.cursor()
    dc.execute("select capsname from capability where id = 1")
    old = dc.fetchone()[0]
    try:
        for _ in range(3):   # builds the memo (where allowed), then answers from it
            assert run_pg2(direct, *caps) == run_pg2(via, *caps)
        via.cursor().execute("update capability set capsname = %s where id = 1", (old + " renamed",))
        got = run_pg2(via, *caps)
        assert got == run_pg2(direct, *caps)
        assert "renamed" in repr(got)
        # and inside an open transaction of another client: its uncommitted name stays invisible
        writer = psycopg2.connect(p.dsn("tenant_a"))
        writer.cursor().execute("update capability set capsname = %s where id = 1", (old + " again",))
        for _ in range(2):
            assert run_pg2(via, *caps) == run_pg2(direct, *caps)
        writer.commit()
        got = run_pg2(via, *caps)
        assert got == run_pg2(direct, *caps)
        assert "again" in repr(got)
        writer.close()
    finally:
        dc.execute("update capability set capsname = %s where id = 1", (old,))
    direct.close()
    via.close()


def test_group_membership_write_is_seen_at_once(proxies, pgenv):
    p = _oneoff(proxies, pgenv, "native", native_butree_ttl="60")
    direct, via = _connect(pgenv, p, "tenant_a")
    dc = direct.cursor()
    # a job row in today's window that reaches its people through a group, and a person of the
    # same client who is not in that group
    dc.execute("select jn.pgroup_id, jn.bu_id, jn.client_id from jobneed jn"
               " where jn.pgroup_id > 1 and jn.identifier not in ('TICKET', 'EXTERNALTOUR')"
               " and (jn.plandatetime + jn.ctzoffset * interval '1 minute')::date"
               "  between current_date and current_date + 1 order by jn.id limit 1")
    row = dc.fetchone()
    assert row is not None, "fixture has no group job in today's window"
    grp, site, client = row
    dc.execute("select p.id from people p where p.id > 1 and not exists (select 1 from pgbelonging"
               " pb where pb.people_id = p.id and pb.pgroup_id = %s) order by p.id limit 1", (grp,))
    person = dc.fetchone()[0]
    job = ("fun_getjobneed", "select * from fun_getjobneed(%s, %s, %s)", (person, site, client))
    try:
        for _ in range(3):
            assert run_pg2(direct, *job) == run_pg2(via, *job)
        before = len(run_pg2(via, *job)[2])
        via.cursor().execute("insert into pgbelonging (pgroup_id, people_id) values (%s, %s)",
                             (grp, person))
        got = run_pg2(via, *job)
        assert got == run_pg2(direct, *job)
        assert len(got[2]) > before
    finally:
        dc.execute("delete from pgbelonging where pgroup_id = %s and people_id = %s", (grp, person))
    direct.close()
    via.close()


def _wait_log_count(p, text, n, timeout=10.0):
    import time
    end = time.time() + timeout
    while time.time() < end:
        if p.log_text().count(text) >= n:
            return True
        time.sleep(0.05)
    return False


def test_writer_gone_mid_transaction(proxies, pgenv):
    """A client that only writes bt (intercept.c keeps no state for it) and disconnects inside its
    transaction: pgshim must not touch it afterwards (ASan would report it) and the BU tree is
    built again once the writer is gone."""
    p = _oneoff(proxies, pgenv, "native", native_butree_ttl="60")
    direct, via = _connect(pgenv, p, "tenant_w")
    call = ("fn_menupbt", "select fn_menupbt(%s, %s::text)", (6, "jsonb"))
    assert run_pg2(direct, *call) == run_pg2(via, *call)
    assert _wait_log_count(p, "BU tree built", 1)
    writer = psycopg2.connect(p.dsn("tenant_w"))
    writer.cursor().execute("update bt set buname = buname where id = 5")
    # while the write is open the tree is dropped and not rebuilt
    assert run_pg2(direct, *call) == run_pg2(via, *call)
    writer.close()   # gone without COMMIT: its transaction ends with it
    for _ in range(20):
        assert run_pg2(direct, *call) == run_pg2(via, *call)
        if p.log_text().count("BU tree built") >= 2:
            break
    assert _wait_log_count(p, "BU tree built", 2)
    assert run_pg2(direct, *call) == run_pg2(via, *call)
    direct.close()
    via.close()


def test_named_prepared_write_reexecuted_by_bind_is_seen(proxies, pgenv):
    """A named statement that writes is parsed once; later executions are Bind/Execute only. Each
    of them must drop the memo: psycopg 3 with prepare=True re-executes the same UPDATE of the
    capability root's name, and the capability answer through pgshim follows every time."""
    import psycopg

    p = _oneoff(proxies, pgenv, "native", native_butree_ttl="60")
    direct, via = _connect(pgenv, p, "tenant_a")
    with open(CAPS_FILE) as f:
        caps = ("get_web_caps_for_client", f.read(), None)
    dc = direct.cursor()
    dc.execute("select capsname from capability where id = 1")
    old = dc.fetchone()[0]
    w = psycopg.connect(p.dsn("tenant_a"), autocommit=True)
    upd = "update capability set capsname = %s where id = 1"
    try:
        for i in range(4):
            for _ in range(2):   # builds the memo, then answers from it
                assert run_pg2(via, *caps) == run_pg2(direct, *caps)
            w.execute(upd, (old + " v%d" % i,), prepare=True)
            got = run_pg2(via, *caps)
            assert got == run_pg2(direct, *caps)
            assert ("v%d" % i) in repr(got)
    finally:
        w.close()
        dc.execute("update capability set capsname = %s where id = 1", (old,))
    direct.close()
    via.close()
