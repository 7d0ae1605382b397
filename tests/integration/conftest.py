"""Fixtures for pgshim's integration suite: real PostgreSQL, a real proxy, real clients.

The suite runs unchanged against pgshim or PgBouncer 1.18 (PROXY=pgshim|pgbouncer), so a failure
on pgshim that passes on PgBouncer is a pgshim bug, not a test bug.

Environment:
  PROXY                      pgshim (default) or pgbouncer
  PGSHIM_BIN                 pgshim binary (default: newest build*/pgshim in the repository)
  PGSHIM_TEST_PG_PORT        PostgreSQL port when the suite starts the harness itself (55432)
  PGSHIM_TEST_REDIS_PORT     Redis port for that harness (56379)
  PGSHIM_TEST_PROXY_PORT     first pgshim port (65432); instances use +0 (session), +1
                             (transaction), +2 (one-off instances with special settings)
  PGSHIM_TEST_PGBOUNCER_PORT first PgBouncer port (64432), same layout
  PGSHIM_TEST_TIMEOUT        per-test watchdog in seconds (60)
  PGENV_DIR, PGPORT, ...     if exported (eval "$(pgenv start ...)"), that harness is reused
  PGSHIM_KEEP_LOGS=1         keep proxy instance directories (ini, userlist, log)

Invariants:
  - Every proxy and harness this suite starts is stopped by PID at session end, even on failure.
  - After every test the new part of each proxy's log is scanned for sanitizer reports, and a
    proxy that exited during a test fails that test (and is restarted for the next one).
  - A test that hangs past the watchdog gets its proxies killed (SIGABRT for pgshim, so ASan
    prints a stack), which unblocks the clients; the test then fails with "watchdog".
"""

import os
import threading

import psycopg2
import pytest

import proxyctl

PROXY_KIND = os.environ.get("PROXY", "pgshim")
TEST_DB = "pgshim_it"
TEST_TIMEOUT = float(os.environ.get("PGSHIM_TEST_TIMEOUT", "60"))


def _base_port():
    if PROXY_KIND == "pgbouncer":
        return int(os.environ.get("PGSHIM_TEST_PGBOUNCER_PORT", "64432"))
    return int(os.environ.get("PGSHIM_TEST_PROXY_PORT", "65432"))


def pytest_report_header(config):
    binary = proxyctl.find_pgshim_binary() if PROXY_KIND == "pgshim" else proxyctl.find_pgbouncer_binary()
    return "proxy under test: %s (%s), first port %d" % (PROXY_KIND, binary, _base_port())


@pytest.fixture(scope="session")
def pgenv():
    env = proxyctl.PgEnv.from_environment()
    if env is not None:
        yield env
        return
    env = proxyctl.PgEnv(int(os.environ.get("PGSHIM_TEST_PG_PORT", "55432")),
                         int(os.environ.get("PGSHIM_TEST_REDIS_PORT", "56379")))
    try:
        env.start()
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="session")
def testdb(pgenv):
    """A fresh database TEST_DB (owner postgres) on the harness PostgreSQL."""
    conn = psycopg2.connect(pgenv.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % TEST_DB)
        cur.execute("CREATE DATABASE %s" % TEST_DB)
        cur.execute("GRANT ALL ON DATABASE %s TO PUBLIC" % TEST_DB)
    conn.close()
    conn = psycopg2.connect(pgenv.dsn(TEST_DB))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("GRANT ALL ON SCHEMA public TO PUBLIC")
    conn.close()
    return TEST_DB


class ProxyManager:
    """Owns every proxy process of the session; standard instances are shared between tests."""

    def __init__(self, kind, pgenv, basedir):
        self.kind = kind
        self.pgenv = pgenv
        self.basedir = basedir
        self.base = _base_port()
        self.shared = {}       # pool_mode -> Proxy
        self.oneoff = []       # Proxies started by a single test
        if kind == "pgshim":
            self.binary = proxyctl.find_pgshim_binary()
        else:
            self.binary = proxyctl.find_pgbouncer_binary()
        self.dead_reports = []

    def _new(self, port, **kw):
        if not self.binary:
            pytest.fail("no %s binary found (set PGSHIM_BIN or build build/pgshim)" % self.kind)
        # pg_port=N points the "*" database at another port (a stopped or fake server).
        pg_port = kw.pop("pg_port", None) or self.pgenv.pg_port
        return proxyctl.Proxy(self.kind, self.binary, port, pg_port,
                              basedir=self.basedir, **kw)

    def get(self, pool_mode):
        p = self.shared.get(pool_mode)
        if p is not None and p.alive():
            return p
        if p is not None:
            p.stop()
        port = self.base + (0 if pool_mode == "session" else 1)
        p = self._new(port, pool_mode=pool_mode, pool_size=20).start()
        self.shared[pool_mode] = p
        return p

    def start_oneoff(self, **kw):
        """A proxy with special settings on port base+2 (base+3.. if several), stopped after the test."""
        port = self.base + 2 + len(self.oneoff)
        p = self._new(port, **kw)
        self.oneoff.append(p)
        return p.start()

    def all(self):
        return [p for p in list(self.shared.values()) + self.oneoff if p.proc is not None]

    def kill_all(self):
        for p in self.all():
            p.kill()

    def stop_oneoffs(self):
        reports = []
        for p in self.oneoff:
            off = 0
            status = p.stop()
            rep = p.sanitizer_report(off)
            if rep:
                reports.append("%s: sanitizer report:\n%s" % (p.name, rep))
            elif self.kind == "pgshim" and status not in (0, None, -15, -2, 143, 130):
                reports.append("%s exited with status %s at shutdown; log tail:\n%s"
                               % (p.name, status, p.log_tail()))
            if not rep:
                p.cleanup()
        self.oneoff = []
        return reports

    def stop_all(self):
        reports = self.stop_oneoffs()
        for p in self.shared.values():
            status = p.stop()
            rep = p.sanitizer_report()
            if rep:
                reports.append("%s: sanitizer report:\n%s" % (p.name, rep))
            elif self.kind == "pgshim" and status not in (0, None, -15, -2, 143, 130):
                reports.append("%s exited with status %s at shutdown; log tail:\n%s"
                               % (p.name, status, p.log_tail()))
            if not rep:
                p.cleanup()
        self.shared = {}
        return reports


@pytest.fixture(scope="session")
def proxies(pgenv, tmp_path_factory):
    basedir = str(tmp_path_factory.mktemp("proxies"))
    os.chmod(basedir, 0o755)
    d = basedir
    while d != "/":     # PgBouncer runs as postgres and must reach its instance directory
        st = os.stat(d)
        if not st.st_mode & 0o001:
            os.chmod(d, st.st_mode | 0o001)
        d = os.path.dirname(d)
    mgr = ProxyManager(PROXY_KIND, pgenv, basedir)
    try:
        yield mgr
    finally:
        reports = mgr.stop_all()
        if reports:
            pytest.fail("\n\n".join(reports), pytrace=False)


@pytest.fixture(autouse=True)
def _proxy_watch(request, proxies):
    """Watchdog against hangs, and per-test check of proxy liveness and sanitizer output."""
    offsets = {id(p): p.log_size() for p in proxies.all()}
    fired = threading.Event()

    def on_timeout():
        fired.set()
        proxies.kill_all()

    # @pytest.mark.watchdog(SECONDS) shortens the limit for tests that are quick when they
    # work, so a hanging proxy costs less of the run.
    m = request.node.get_closest_marker("watchdog")
    limit = min(TEST_TIMEOUT, float(m.args[0])) if m else TEST_TIMEOUT
    timer = threading.Timer(limit, on_timeout)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
    problems = []
    if fired.is_set():
        problems.append("watchdog: test still running after %.0fs; proxies were killed" % limit)
    for p in proxies.all():
        rep = p.sanitizer_report(offsets.get(id(p), 0))
        if rep:
            problems.append("%s: sanitizer report during this test:\n%s" % (p.name, rep))
        if not p.alive() and not fired.is_set():
            problems.append("%s exited during this test (status %s); log tail:\n%s"
                            % (p.name, p.proc.returncode if p.proc else None, p.log_tail()))
    # Dead or watchdog-killed shared proxies are reaped here, so the next test that needs one
    # gets a fresh instance and no later test is blamed for this one's crash.
    for mode, p in list(proxies.shared.items()):
        if not p.alive():
            p.stop()
            del proxies.shared[mode]
    problems += proxies.stop_oneoffs()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture(params=["session", "transaction"])
def pool_mode(request):
    return request.param


@pytest.fixture
def proxy(proxies, pool_mode, testdb):
    return proxies.get(pool_mode)


@pytest.fixture
def session_proxy(proxies, testdb):
    return proxies.get("session")


@pytest.fixture
def txn_proxy(proxies, testdb):
    return proxies.get("transaction")


@pytest.fixture
def pgdirect(pgenv, testdb):
    """An autocommit psycopg2 connection straight to PostgreSQL (not through the proxy)."""
    conn = psycopg2.connect(pgenv.dsn(testdb))
    conn.autocommit = True
    yield conn
    conn.close()


def is_pgbouncer():
    return PROXY_KIND == "pgbouncer"
