"""Client authentication to the proxy and the proxy's login to PostgreSQL.

Client side: auth_type scram-sha-256 (the shared instances) and md5 (a one-off instance), right
and wrong passwords; a wrong password must give SQLSTATE 28P01 and a closed connection, checked
with the raw client in pgwire.py because libpq hides the SQLSTATE of a failed login. An auth_file
entry may hold a SCRAM secret instead of a plaintext password.

Server side: the harness's pg_hba gives md5user md5, pwuser password, trustuser trust and
postgres scram-sha-256, so logging in as each through the proxy exercises every server method.
"""

import psycopg2
import pytest

import pgwire
from conftest import is_pgbouncer


# pgshim must answer a failed login with 28P01 (issue 2); PgBouncer 1.18 sends 08P01 for a
# failed SASL/md5 exchange, so when the suite runs against PgBouncer that is accepted instead.
BAD_PASSWORD_STATES = ("28P01", "08P01") if is_pgbouncer() else ("28P01",)


def _login(proxy, user, password, db, unix=False):
    if unix:
        c = pgwire.Conn(None, None, unix_path="%s/.s.PGSQL.%d" % (proxy.sockdir, proxy.port))
    else:
        c = pgwire.Conn("127.0.0.1", proxy.port)
    try:
        err = c.startup(user, db, password)
        if err is None:
            rows, _, qerr = c.query("select current_user")
            assert qerr is None, qerr
            return rows[0][0], None, None
        return None, err, c.at_eof()
    finally:
        c.close()


@pytest.mark.parametrize("user", ["postgres", "md5user", "pwuser", "trustuser"])
def test_scram_client_auth_and_server_methods(proxy, testdb, user):
    who, err, _ = _login(proxy, user, proxy.users[user], testdb)
    assert err is None, err
    assert who == user
    # libpq (psycopg2) too, which negotiates SCRAM itself
    c = psycopg2.connect(proxy.dsn(testdb, user=user))
    with c.cursor() as cur:
        cur.execute("select current_user, session_user")
        assert cur.fetchone() == (user, user)
    c.close()


def test_scram_wrong_password(proxy, testdb):
    who, err, closed = _login(proxy, "postgres", "not-the-password", testdb)
    assert who is None
    assert err.get("C") in BAD_PASSWORD_STATES, err
    assert err.get("S") in ("FATAL", "ERROR"), err
    assert "not-the-password" not in proxy.log_text()
    assert closed
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(proxy.dsn(testdb, password="wrong"))


def test_unknown_user_rejected(proxy, testdb):
    who, err, closed = _login(proxy, "nosuchuser", "whatever", testdb)
    assert who is None
    assert err.get("C") in ("28P01", "28000") + BAD_PASSWORD_STATES, err
    assert closed


def test_unix_socket_login(proxy, testdb):
    who, err, _ = _login(proxy, "postgres", proxy.users["postgres"], testdb, unix=True)
    assert err is None, err
    assert who == "postgres"
    c = psycopg2.connect(proxy.dsn(testdb, host=proxy.sockdir))
    with c.cursor() as cur:
        cur.execute("select 1")
        assert cur.fetchone() == (1,)
    c.close()


@pytest.fixture
def md5_proxy(proxies, testdb):
    return proxies.start_oneoff(pool_mode="transaction", auth_type="md5")


@pytest.mark.parametrize("user", ["postgres", "md5user", "pwuser", "trustuser"])
def test_md5_client_auth(md5_proxy, testdb, user):
    who, err, _ = _login(md5_proxy, user, md5_proxy.users[user], testdb)
    assert err is None, err
    assert who == user


def test_md5_wrong_password(md5_proxy, testdb):
    who, err, closed = _login(md5_proxy, "md5user", "wrong-md5-password", testdb)
    assert who is None
    assert err.get("C") in BAD_PASSWORD_STATES, err
    assert closed


@pytest.fixture
def scram_secret_user(pgdirect):
    """A role whose auth_file entry is its SCRAM secret (as copied from pg_authid)."""
    with pgdirect.cursor() as cur:
        cur.execute("drop role if exists pgshim_scram_secret")
        cur.execute("set password_encryption = 'scram-sha-256'")
        cur.execute("create role pgshim_scram_secret login password 'secret-pw-42'")
        cur.execute("select rolpassword from pg_authid where rolname = 'pgshim_scram_secret'")
        secret = cur.fetchone()[0]
    assert secret.startswith("SCRAM-SHA-256$")
    yield secret
    with pgdirect.cursor() as cur:
        cur.execute("drop role if exists pgshim_scram_secret")


def test_scram_secret_in_auth_file(proxies, testdb, scram_secret_user):
    users = {"postgres": "postgres", "pgshim_scram_secret": scram_secret_user}
    p = proxies.start_oneoff(pool_mode="session", users=users)
    who, err, _ = _login(p, "pgshim_scram_secret", "secret-pw-42", testdb)
    assert err is None, err
    assert who == "pgshim_scram_secret"
    who, err, closed = _login(p, "pgshim_scram_secret", "secret-pw-43", testdb)
    assert err and err.get("C") in BAD_PASSWORD_STATES, err
    assert "secret-pw-4" not in p.log_text() and scram_secret_user not in p.log_text()
