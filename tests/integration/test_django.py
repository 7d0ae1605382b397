"""Django 3.2 through the proxy in transaction mode: migrate, then the pgshim_roundtrip command
(CRUD, JSONField/ArrayField, atomic() commit and rollback, select_for_update), with
CONN_MAX_AGE 0 and 60. The database is created fresh over a direct connection first.
"""

import os
import subprocess

import psycopg2
import pytest

DJANGO_DIR = os.path.join(os.path.dirname(__file__), "..", "django")
DB = "pgshim_it_django"


@pytest.fixture
def djangodb(pgenv):
    conn = psycopg2.connect(pgenv.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("drop database if exists %s with (force)" % DB)
        cur.execute("create database %s" % DB)
    yield DB
    conn.close()


def manage(proxy, *args, conn_max_age=0):
    env = dict(os.environ,
               PGSHIM_DJANGO_HOST="127.0.0.1", PGSHIM_DJANGO_PORT=str(proxy.port),
               PGSHIM_DJANGO_DB=DB, PGSHIM_DJANGO_USER="postgres",
               PGSHIM_DJANGO_PASSWORD=proxy.users["postgres"],
               PGSHIM_DJANGO_CONN_MAX_AGE=str(conn_max_age),
               PYTHONWARNINGS="ignore")
    return subprocess.run(["/usr/bin/python3", "manage.py"] + list(args), cwd=DJANGO_DIR, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=180)


@pytest.mark.parametrize("conn_max_age", [0, 60])
def test_django_migrate_and_roundtrip(txn_proxy, djangodb, conn_max_age):
    r = manage(txn_proxy, "migrate", "--noinput", conn_max_age=conn_max_age)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Applying pgshimapp.0001_initial... OK" in r.stdout
    r = manage(txn_proxy, "pgshim_roundtrip", conn_max_age=conn_max_age)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "roundtrip passed" in r.stdout, r.stdout
    # a second run on the migrated database (nothing to apply) also works
    r = manage(txn_proxy, "migrate", "--noinput", conn_max_age=conn_max_age)
    assert r.returncode == 0 and "No migrations to apply" in r.stdout, r.stdout + r.stderr


def test_django_session_mode(session_proxy, djangodb):
    r = manage(session_proxy, "migrate", "--noinput")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = manage(session_proxy, "pgshim_roundtrip")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
