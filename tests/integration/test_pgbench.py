"""pgbench through the proxy: -i, then -M simple / extended / prepared (transaction mode too:
max_prepared_statements, see test_prepared.py).

Every run must finish with zero failed transactions and no aborted client. Each pool mode gets
its own pgbench database so the tests do not depend on order across modes.
"""

import os
import re
import subprocess

import psycopg2
import pytest

SECONDS = int(os.environ.get("PGSHIM_TEST_PGBENCH_SECONDS", "3"))


def pgbench(proxy, db, *args, timeout=120):
    env = dict(os.environ, PGPASSWORD=proxy.users["postgres"], PGCONNECT_TIMEOUT="10")
    argv = ["pgbench", "-h", "127.0.0.1", "-p", str(proxy.port), "-U", "postgres"] + list(args) + [db]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, timeout=timeout)


@pytest.fixture
def benchdb(pgenv, pool_mode):
    name = "pgshim_it_bench_%s" % pool_mode
    conn = psycopg2.connect(pgenv.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select 1 from pg_database where datname = %s", (name,))
        if not cur.fetchone():
            cur.execute("create database %s" % name)
    conn.close()
    return name


def _initialised(proxy, db):
    r = pgbench(proxy, db, "-i", "-q", "-s", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.mark.watchdog(30)
def test_pgbench_init(proxy, benchdb):
    r = _initialised(proxy, benchdb)
    assert "done" in r.stderr


def _check_run(r):
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    assert m and int(m.group(1)) > 0, out
    f = re.search(r"number of failed transactions: (\d+)", out)
    assert f is None or int(f.group(1)) == 0, out
    assert "aborted" not in out.lower() or re.search(r"aborted.*: 0\b", out), out


@pytest.mark.parametrize("protocol", ["simple", "extended", "prepared"])
def test_pgbench_run(proxy, benchdb, pgenv, pool_mode, protocol):
    # The run tests must not depend on test_pgbench_init: if the tables are missing or empty,
    # initialise straight against PostgreSQL.
    conn = psycopg2.connect(pgenv.dsn(benchdb))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select to_regclass('pgbench_branches') is not null")
        have = cur.fetchone()[0]
        if have:
            cur.execute("select count(*) from pgbench_branches")
            have = cur.fetchone()[0] > 0
    conn.close()
    if not have:
        env = dict(os.environ, PGPASSWORD="postgres")
        r = subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p",
                            str(pgenv.pg_port), "-U", "postgres", benchdb], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        assert r.returncode == 0, r.stdout
    r = pgbench(proxy, benchdb, "-n", "-M", protocol, "-c", "4", "-j", "2", "-T", str(SECONDS))
    _check_run(r)
