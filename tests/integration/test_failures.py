"""Failure handling of the pooler (issue 3): what a client sees when PostgreSQL goes away or
refuses connections, when another client misbehaves, or when a server sends garbage -- and that
the clients not involved are unaffected and the proxy keeps running.

Every test asserts the SQLSTATE the client receives and checks a bystander client. The proxy's
liveness after each test is checked by the autouse fixture in conftest.py.

PgBouncer 1.18 (PROXY=pgbouncer) sends 08P01 for every error it generates itself; where pgshim
deliberately differs (max_client_conn 53300, wrong password 28P01) the accepted set says so.
"""

import socket
import struct
import threading
import time

import psycopg2
import pytest

import pgwire
from conftest import is_pgbouncer

# What a client may legitimately see when PostgreSQL restarts under it: the backend's own
# FATAL (57P01 admin shutdown, 57P03 cannot connect now while starting), the proxy's
# "server conn crashed?" (08P01 in PgBouncer, 08006 in pgshim) or query_wait_timeout (08P01).
RESTART_STATES = {"57P01", "57P02", "57P03", "08006", "08P01", "08001"}
BAD_PASSWORD_STATES = ("28P01", "08P01") if is_pgbouncer() else ("28P01",)


# ------------------------------------------------------------------------------------ helpers

def raw_login(p, dbname, user="postgres", password=None, timeout=10.0):
    """A logged-in pgwire connection to proxy p (fails the test if the login is refused)."""
    c = pgwire.Conn("127.0.0.1", p.port, timeout=timeout)
    err = c.startup(user, dbname, p.users[user] if password is None else password)
    assert err is None, err
    return c


def read_until_ready_or_eof(c):
    """Reads messages until ReadyForQuery or EOF. Returns (list of (type, payload), eof)."""
    out = []
    try:
        while True:
            t, payload = c.read_msg()
            out.append((t, payload))
            if t == b"Z":
                return out, False
    except (pgwire.WireError, ConnectionResetError):
        return out, True


def first_error(msgs):
    for t, payload in msgs:
        if t == b"E":
            return pgwire.error_fields(payload)
    return None


def ready_status(msgs):
    for t, payload in msgs:
        if t == b"Z":
            return payload[:1]
    return None


def assert_works(p, dbname, user="postgres"):
    """A fresh client of proxy p can log in and run a query (the bystander check)."""
    c = raw_login(p, dbname, user)
    rows, tags, err = c.query("select 41 + 1")
    c.close()
    assert err is None and rows == [["42"]], (rows, tags, err)


def pgcode_of(exc):
    """SQLSTATE of a psycopg2 error, or a pseudo-code for connection loss without an error."""
    code = getattr(exc, "pgcode", None)
    if code:
        return code
    return "conn-lost:" + str(exc).strip().splitlines()[0][:80] if str(exc) else "conn-lost"


# ---------------------------------------------------------------------- PostgreSQL goes away

@pytest.mark.slow
@pytest.mark.watchdog(120)
def test_pg_restart_under_load(proxies, pgenv, testdb):
    """PostgreSQL restarts while 12 clients run transactions: clients get errors with the
    expected SQLSTATEs (never a hang), every client works again afterwards, the pool refills."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=4,
                             extra={"server_login_retry": 0.5, "query_wait_timeout": 20})
    stop = threading.Event()
    restarted = threading.Event()
    errors, ok_after = [], {}
    lock = threading.Lock()

    def worker(i):
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(p.dsn(testdb))
                with conn.cursor() as cur:
                    cur.execute("select pg_sleep(0.01), %s", (i,))
                    assert cur.fetchone()[1] == i
                conn.commit()
                if restarted.is_set():
                    with lock:
                        ok_after[i] = ok_after.get(i, 0) + 1
            except psycopg2.Error as e:
                with lock:
                    errors.append(pgcode_of(e))
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    pgenv.restart_pg()
    restarted.set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(ok_after) < len(threads):
        time.sleep(0.2)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "a client hung"
    assert len(ok_after) == len(threads), ("clients that never worked again", ok_after, errors)
    bad = [e for e in errors if e not in RESTART_STATES and not e.startswith("conn-lost")]
    assert not bad, bad
    assert errors, "a restart under load should have cost some client an error"
    assert_works(p, testdb)


@pytest.mark.watchdog(60)
def test_pg_stopped_then_back(proxies, pgenv, testdb):
    """PostgreSQL stops: a query in flight gets an error at once, a query that arrives while it
    is down waits and gets FATAL 08P01 query_wait_timeout, and when PostgreSQL is back the same
    proxy serves new clients without a restart."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=2,
                             extra={"server_login_retry": 0.5, "query_wait_timeout": 2})
    a = raw_login(p, testdb)
    assert a.query("select 1")[2] is None
    a.send_msg(b"Q", b"select pg_sleep(5)\0")
    time.sleep(0.3)
    try:
        pgenv.stop_pg()
        msgs, eof = read_until_ready_or_eof(a)
        err = first_error(msgs)
        assert err is not None and err["C"] in RESTART_STATES, msgs
        assert eof
        b = raw_login(p, testdb)          # the pool's parameters are known: login works
        t0 = time.monotonic()
        b.send_msg(b"Q", b"select 1\0")
        msgs, eof = read_until_ready_or_eof(b)
        waited = time.monotonic() - t0
        err = first_error(msgs)
        assert err is not None and err["C"] == "08P01" and err["M"] == "query_wait_timeout", msgs
        if not is_pgbouncer():   # pgshim says why in the DETAIL
            assert "server login has been failing" in err.get("D", ""), err
        assert 1.5 <= waited <= 6, waited
        assert eof
    finally:
        pgenv.start_pg()
    deadline = time.monotonic() + 15
    while True:
        try:
            assert_works(p, testdb)
            break
        except (AssertionError, pgwire.WireError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.watchdog(60)
def test_server_refusing_connections(proxies, testdb, pgdirect):
    """A pool whose server port refuses connections: the client waits for the pool and gets
    FATAL 08P01 query_wait_timeout (no hang, no crash); another proxy on the healthy server is
    unaffected."""
    with socket.socket() as s:      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=2, pg_port=dead_port,
                             extra={"server_login_retry": 0.5, "query_wait_timeout": 2})
    for _ in range(2):
        c = pgwire.Conn("127.0.0.1", p.port, timeout=15)
        t0 = time.monotonic()
        try:
            err = c.startup("postgres", testdb, p.users["postgres"])
            if err is None:        # a proxy may welcome first and fail the query instead
                c.send_msg(b"Q", b"select 1\0")
                err = first_error(read_until_ready_or_eof(c)[0])
        finally:
            c.close()
        waited = time.monotonic() - t0
        assert err is not None and err["C"] == "08P01", err
        assert err["M"] == "query_wait_timeout" or "connect" in err["M"], err
        if not is_pgbouncer():
            assert "connection refused" in err.get("D", ""), err
        assert waited <= 6, waited
    healthy = proxies.start_oneoff(pool_mode="transaction", pool_size=2)
    assert_works(healthy, testdb)


# -------------------------------------------------------------------- clients that misbehave

@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_client_abort_mid_transaction(proxies, testdb, pgdirect, mode):
    """A client that vanishes (no Terminate) inside a transaction that created a temp table,
    changed a setting, took a lock and wrote a row: the next client -- on a pool of one server
    -- sees no open transaction, no temp table, no SET, no lock and no row."""
    p = proxies.start_oneoff(pool_mode=mode, pool_size=1)
    with pgdirect.cursor() as cur:
        cur.execute("drop table if exists fail_abort; create table fail_abort (x int)")
    a = raw_login(p, testdb)
    for sql in ("begin", "create temp table fail_tmp (y int)", "set work_mem = '7MB'",
                "set statement_timeout = '123s'", "lock table fail_abort in access exclusive mode",
                "insert into fail_abort values (1)"):
        assert a.query(sql)[2] is None, sql
    a.sock.shutdown(socket.SHUT_RDWR)   # vanish: no Terminate, transaction still open
    a.close()
    b = raw_login(p, testdb)
    b.sock.settimeout(5)                 # a leftover lock would block the count below
    rows, _, err = b.query("select current_setting('work_mem'), current_setting('statement_timeout'),"
                           " to_regclass('pg_temp.fail_tmp') is null,"
                           " txid_current_if_assigned() is null, (select count(*) from fail_abort)")
    assert err is None, err
    assert rows == [["4MB", "0", "t", "t", "0"]], rows
    b.send_msg(b"Q", b"select 1\0")
    assert ready_status(read_until_ready_or_eof(b)[0]) == b"I"
    b.close()


@pytest.mark.parametrize("packet,why", [
    (struct.pack("!II", 8, 12345), "unknown protocol version"),
    (struct.pack("!II", 3, 196608), "length below the minimum"),
    (struct.pack("!II", 200000, 196608) + b"user\0x" * 10, "length above the startup limit"),
    (struct.pack("!II", 21, 196608) + b"user\0postgres\0", "parameter list not terminated"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not PostgreSQL at all"),
])
def test_malformed_startup_packet(proxies, testdb, packet, why):
    """A malformed startup packet gets FATAL 08P01 (0A000 for an unknown protocol version, as
    PostgreSQL sends) and a closed connection; a client logged in meanwhile is unaffected."""
    p = proxies.get("transaction")
    bystander = raw_login(p, testdb)
    c = pgwire.Conn("127.0.0.1", p.port, timeout=10)
    c.send(packet)
    msgs, eof = read_until_ready_or_eof(c)
    err = first_error(msgs)
    c.close()
    assert err is not None, (why, msgs)
    assert err["C"] in ("08P01", "0A000"), (why, err)
    assert eof, why
    rows, _, qerr = bystander.query("select 7")
    assert qerr is None and rows == [["7"]]
    bystander.close()


def test_truncated_startup_packet_times_out(proxies, testdb):
    """Half a startup packet and silence: client_login_timeout closes the connection with
    FATAL 08P01 client_login_timeout."""
    p = proxies.start_oneoff(pool_mode="transaction", extra={"client_login_timeout": 1})
    c = pgwire.Conn("127.0.0.1", p.port, timeout=10)
    c.send(struct.pack("!II", 40, 196608) + b"user\0")
    t0 = time.monotonic()
    msgs, eof = read_until_ready_or_eof(c)
    err = first_error(msgs)
    assert err is not None and err["C"] == "08P01", msgs
    assert err["M"] in ("client_login_timeout", "client sent partial pkt in startup phase"), err
    assert eof and time.monotonic() - t0 < 5
    assert_works(p, testdb)


@pytest.mark.parametrize("case", ["header-over-type-limit", "huge-length", "over-max-packet-size"])
def test_oversized_message(proxies, testdb, case):
    """A message longer than allowed gets FATAL 08P01 and closes that client only: the other
    client on the same one-server pool keeps working."""
    extra = {"max_packet_size": 65536} if case == "over-max-packet-size" and not is_pgbouncer() else {}
    if case == "over-max-packet-size" and is_pgbouncer():
        pytest.skip("PgBouncer 1.18 has no max_packet_size")
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=1, extra=extra)
    other = raw_login(p, testdb)
    c = raw_login(p, testdb)
    if case == "header-over-type-limit":
        c.send(b"S" + struct.pack("!I", 100004))          # a Sync claiming 100 kB
    elif case == "huge-length":
        c.send(b"Q" + struct.pack("!I", 0x7ffffff0))      # 2 GB Query
    else:
        c.send_msg(b"Q", b"select '" + b"x" * 100000 + b"'\0")
    msgs, eof = read_until_ready_or_eof(c)
    err = first_error(msgs)
    c.close()
    assert err is not None and err["C"] == "08P01", msgs
    assert eof
    rows, _, qerr = other.query("select 'still here'")
    assert qerr is None and rows == [["still here"]]
    other.close()
    assert_works(p, testdb)


@pytest.mark.parametrize("when", ["idle", "in-transaction", "half-message"])
def test_garbage_mid_stream(proxies, testdb, pgdirect, when):
    """Garbage after login (an unknown message type) gets FATAL 08P01 and closes that client;
    the server it had is not handed on dirty (pool of one: the next client works, sees no
    transaction). A client that stops in the middle of a message and disconnects is the same."""
    p = proxies.start_oneoff(pool_mode="transaction", pool_size=1)
    c = raw_login(p, testdb)
    if when == "in-transaction":
        assert c.query("begin")[2] is None
        assert c.query("create temp table garbage_tmp (x int)")[2] is None
    if when == "half-message":
        c.send(b"Q" + struct.pack("!I", 1004) + b"select 1 /* only part of it")
        time.sleep(0.3)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
    else:
        c.send(b"\x01\x02\x03\x04\x05\x06\x07\x08garbage")
        msgs, eof = read_until_ready_or_eof(c)
        err = first_error(msgs)
        c.close()
        assert err is not None and err["C"] == "08P01", msgs
        assert eof
    b = raw_login(p, testdb)
    rows, _, err = b.query("select to_regclass('pg_temp.garbage_tmp') is null, "
                           "txid_current_if_assigned() is null")
    assert err is None and rows == [["t", "t"]], (rows, err)
    b.close()


def test_wrong_password(proxies, testdb):
    """A wrong password gets 28P01 and a closed connection; a client already logged in keeps
    working and a correct login right after succeeds."""
    p = proxies.get("transaction")
    bystander = raw_login(p, testdb)
    c = pgwire.Conn("127.0.0.1", p.port, timeout=10)
    err = c.startup("postgres", testdb, "certainly-wrong")
    assert err is not None and err["C"] in BAD_PASSWORD_STATES, err
    assert c.at_eof()
    c.close()
    rows, _, qerr = bystander.query("select 3")
    assert qerr is None and rows == [["3"]]
    bystander.close()
    assert_works(p, testdb)


# ------------------------------------------------------------------ a server that misbehaves

class FakeServer:
    """A minimal PostgreSQL look-alike on a random port: trust login, then answers any query
    with `SELECT 1` rows -- except a query containing 'garbage', answered with bytes that are
    not a protocol message. Used to prove that garbage from a server closes only that server
    connection and errors only its client."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.conns = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _msg(t, payload):
        return t + struct.pack("!I", len(payload) + 4) + payload

    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _recv_exact(self, s, n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise OSError("eof")
            buf += chunk
        return buf

    def _serve(self, s):
        m = self._msg
        try:
            (ln,) = struct.unpack("!I", self._recv_exact(s, 4))
            self._recv_exact(s, ln - 4)
            hello = m(b"R", struct.pack("!I", 0))
            for k, v in (("server_version", "15.0"), ("client_encoding", "UTF8"),
                         ("DateStyle", "ISO, MDY"), ("TimeZone", "UTC"),
                         ("integer_datetimes", "on"), ("standard_conforming_strings", "on"),
                         ("IntervalStyle", "postgres"), ("application_name", "")):
                hello += m(b"S", k.encode() + b"\0" + v.encode() + b"\0")
            hello += m(b"K", struct.pack("!II", 4242, 99)) + m(b"Z", b"I")
            s.sendall(hello)
            while True:
                t = self._recv_exact(s, 1)
                (ln,) = struct.unpack("!I", self._recv_exact(s, 4))
                body = self._recv_exact(s, ln - 4)
                if t == b"X":
                    break
                if t != b"Q":
                    continue
                if b"garbage" in body:
                    s.sendall(b"\x00\xff\xfe garbage from the server \x01\x02\x03" * 4)
                    continue
                col = b"?column?\0" + struct.pack("!IhIhih", 0, 0, 23, 4, -1, 0)
                reply = m(b"T", struct.pack("!h", 1) + col)
                reply += m(b"D", struct.pack("!hi", 1, 1) + b"1")
                reply += m(b"C", b"SELECT 1\0")
                if body.strip(b"\0").strip().lower().startswith(b"set "):
                    reply = m(b"C", b"SET\0")
                s.sendall(reply + m(b"Z", b"I"))
        except OSError:
            pass
        finally:
            s.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


def test_garbage_from_server(proxies, testdb):
    """A server that answers with garbage: that server connection is closed and only its client
    gets an error (08P01 / 08006); another client of the same pool keeps working, and the
    pool replaces the broken connection."""
    fake = FakeServer()
    try:
        p = proxies.start_oneoff(pool_mode="transaction", pool_size=2, pg_port=fake.port,
                                 auth_type="md5")
        other = raw_login(p, "fakedb")
        bad = raw_login(p, "fakedb")
        assert other.query("select 1")[0] == [["1"]]
        bad.send_msg(b"Q", b"select 'garbage'\0")
        msgs, eof = read_until_ready_or_eof(bad)
        err = first_error(msgs)
        bad.close()
        assert err is not None and err["C"] in ("08P01", "08006"), msgs
        assert eof
        for _ in range(3):
            rows, _, qerr = other.query("select 1")
            assert qerr is None and rows == [["1"]], (rows, qerr)
        other.close()
        again = raw_login(p, "fakedb")
        assert again.query("select 1")[0] == [["1"]]
        again.close()
    finally:
        fake.stop()
