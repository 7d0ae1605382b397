"""The legacy-shaped Django app (tests/django/legacyapp) through pgshim in transaction mode, with
the tenants' interception mode taken from the test parameter, compared call by call with the same
Django code talking straight to PostgreSQL.

Two fixture tenants (tenant_a, tenant_b) are loaded at scale 0.01 into the harness PostgreSQL
(tests/fixture/load, kept if already there) and migrated through pgshim (legacyapp's scratch
table). Each test starts its own pgshim (transaction pool mode, admin console enabled) whose ini
has `[intercept] all = off` and `[tenant.tenant_a]` / `[tenant.tenant_b]` `all = <mode>`, then
runs `manage.py legacy_compare` (ORM CRUD/atomic/select_for_update/bulk_create/JSON and Array
lookups/aggregates, and every legacy call site of spec 3 with its exact SQL), which compares each
call's Python-level output through pgshim with the same call on a direct alias (multisets where
spec 10 says the legacy order is undefined). Where the admin console answers SHOW INTERCEPTS, the
counters must show what the mode promises: off -> nothing answered natively; native -> every
called function answered natively at least once; shadow -> comparisons made, zero mismatches,
nothing answered natively.

Environment: as conftest.py (PGSHIM_TEST_PROXY_PORT: this module uses base+2 and base+3);
PGSHIM_TEST_DJANGO_PER_SITE (4) argument tuples per call site; PGSHIM_TEST_DJANGO_TIMEOUT (300)
per-test limit (this module runs longer than the suite's default watchdog, so it keeps its own).

Invariants: every pgshim started here is stopped by PID at the end of its test and its log is
scanned for sanitizer reports; the fixture databases are only read, except rows with codes
starting "dj-" that legacy_compare writes and deletes again.
"""

import json
import os
import re
import subprocess
import threading

import psycopg2
import pytest

import conftest
import proxyctl

pytestmark = pytest.mark.skipif(conftest.is_pgbouncer(), reason="pgshim-only feature")

TENANTS = ("tenant_a", "tenant_b")
DJANGO_DIR = os.path.join(proxyctl.REPO, "tests", "django")
FIXTURE_LOAD = os.path.join(proxyctl.REPO, "tests", "fixture", "load")
PER_SITE = int(os.environ.get("PGSHIM_TEST_DJANGO_PER_SITE", "4"))
LIMIT = float(os.environ.get("PGSHIM_TEST_DJANGO_TIMEOUT", "300"))

# Function (SHOW INTERCEPTS name) -> called by legacy_compare through these call sites.
CALLED = {
    "fn_get_bulist": "get_all_bu_of_client, get_whole_tree, load_parent_choices, get_bus_based_on_idf",
    "fn_getbulist_basedon_idnf": "SELECT fn_getbulist_basedon_idnf(%s, %s, %s)",
    "fn_getassetvsquestionset": "SELECT fn_getassetvsquestionset(%s, %s, %s)",
    "fn_getassetdetails": "get_assetdetails",
    "fun_getjobneed": "get_jobneedmodifiedafter",
    "fun_getexttourjobneed": "get_externaltouremodifiedafter",
    "fn_get_schedule_for_adhoc": "select * from fn_get_schedule_for_adhoc(...)",
    "get_web_caps_for_client": "Capability.objects.raw(caps query)",
}


@pytest.fixture(autouse=True)
def _proxy_watch():
    """Replaces the suite's per-test watchdog for this module: each test here owns its pgshim
    (stopped and sanitizer-checked by the `shim` fixture) and needs more than the default limit."""
    yield


def _load_fixtures(pgenv):
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(pgenv.pg_port), PGUSER="postgres",
               PGPASSWORD="postgres")
    conn = psycopg2.connect(pgenv.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select datname from pg_database")
        have = {r[0] for r in cur.fetchall()}
    conn.close()
    for i, db in enumerate(TENANTS):
        if db not in have:
            subprocess.run([FIXTURE_LOAD, "--db", db, "--scale", "0.01", "--seed", str(i + 1),
                            "--quiet"], env=env, check=True, timeout=600,
                           stdout=subprocess.DEVNULL)


def _caps_ini_key():
    """The ini key naming the capability-query file, if this pgshim has one (the interception
    engine reads it from its config; found by looking at the source), else None."""
    for rel in ("proxy/config.c", "proxy/flags.c", "proxy/intercept.c", "proxy/native.c"):
        try:
            with open(os.path.join(proxyctl.REPO, rel)) as f:
                src = f.read()
        except OSError:
            continue
        for key in ("caps_query_file", "capabilities_query_file", "caps_query", "caps_sql_file"):
            if '"%s"' % key in src:
                return key
    return None


def _engine_has_cache():
    """True when the interception path uses the Redis cache (proxy/cachemode.c exists and
    intercept.c starts cache lookups), i.e. cache mode is more than native under another name."""
    try:
        with open(os.path.join(proxyctl.REPO, "proxy", "intercept.c")) as f:
            src = f.read()
    except OSError:
        return False
    return (os.path.exists(os.path.join(proxyctl.REPO, "proxy", "cachemode.c"))
            and "px_cache_call_start" in src)


def manage(port, pgenv, *args, conn_max_age=0, timeout=600):
    env = dict(os.environ,
               PGSHIM_DJANGO_HOST="127.0.0.1", PGSHIM_DJANGO_PORT=str(port),
               PGSHIM_DJANGO_DB="pgshim_it_django", PGSHIM_DJANGO_USER="postgres",
               PGSHIM_DJANGO_PASSWORD="postgres",
               PGSHIM_DJANGO_TENANTS=",".join(TENANTS),
               PGSHIM_DJANGO_TENANT_HOST="127.0.0.1", PGSHIM_DJANGO_TENANT_PORT=str(port),
               PGSHIM_DJANGO_DIRECT_HOST="127.0.0.1", PGSHIM_DJANGO_DIRECT_PORT=str(pgenv.pg_port),
               PGSHIM_DJANGO_DIRECT_PASSWORD="postgres",
               PGSHIM_DJANGO_CONN_MAX_AGE=str(conn_max_age),
               PYTHONWARNINGS="ignore")
    return subprocess.run(["/usr/bin/python3", "manage.py"] + list(args), cwd=DJANGO_DIR, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


def _start_shim(pgenv, tmpdir, port, modes, redis=False):
    sections = {"intercept": [("all", "off")]}
    for t, m in modes.items():
        sections["tenant.%s" % t] = [("all", m)]
    extra = {"admin_users": "postgres"}
    key = _caps_ini_key()
    if key:
        extra[key] = os.path.join(proxyctl.REPO, "tests", "fixture", "caps_query.sql")
    if redis:
        sections["redis"] = [("enabled", "1"), ("host", "127.0.0.1"),
                             ("port", str(pgenv.redis_port))]
    env = dict(os.environ)
    env["PGSHIM_TEST_FLAGS"] = ",".join("%s:all:%s" % (t, m) for t, m in modes.items())
    p = proxyctl.Proxy("pgshim", proxyctl.find_pgshim_binary(), port, pgenv.pg_port,
                       pool_mode="transaction", pool_size=10, extra=extra, basedir=tmpdir,
                       env=env, sections=sections, name="pgshim-django-%d" % port)
    return p.start()


@pytest.fixture(scope="module")
def migrated(pgenv, tmp_path_factory):
    """Fixture tenants loaded, and legacyapp migrated into them through an all-off pgshim."""
    if not proxyctl.find_pgshim_binary():
        pytest.fail("no pgshim binary (set PGSHIM_BIN or build build/pgshim)")
    _load_fixtures(pgenv)
    basedir = str(tmp_path_factory.mktemp("django-legacy"))
    os.chmod(basedir, 0o755)
    port = conftest._base_port() + 3
    p = _start_shim(pgenv, basedir, port, {t: "off" for t in TENANTS})
    try:
        for t in TENANTS:
            r = manage(port, pgenv, "migrate", "--database", t, "--noinput")
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    finally:
        p.stop()
        rep = p.sanitizer_report()
        if not rep:
            p.cleanup()
    assert not rep, rep
    return basedir


@pytest.fixture
def shim(request, pgenv, migrated):
    """A pgshim for one test (modes from the test's parameter), with its own hang watchdog."""
    holder = {}
    fired = threading.Event()

    def start(modes, redis=False):
        p = _start_shim(pgenv, migrated, conftest._base_port() + 2, modes, redis=redis)
        holder["p"] = p
        return p

    def on_timeout():
        fired.set()
        if "p" in holder:
            holder["p"].kill()

    timer = threading.Timer(LIMIT, on_timeout)
    timer.daemon = True
    timer.start()
    try:
        yield start
    finally:
        timer.cancel()
        p = holder.get("p")
        problems = []
        if fired.is_set():
            problems.append("watchdog: still running after %.0fs; pgshim was killed" % LIMIT)
        if p is not None:
            alive = p.alive()
            status = p.stop()
            rep = p.sanitizer_report()
            if rep:
                problems.append("sanitizer report:\n" + rep)
            elif not alive and not fired.is_set():
                problems.append("pgshim exited during the test (status %s):\n%s"
                                % (status, p.log_tail()))
            else:
                p.cleanup()
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


def show_intercepts(p, tenant):
    """{function: row dict} from SHOW INTERCEPTS tenant, or None if the console cannot say."""
    try:
        conn = psycopg2.connect(p.dsn("pgshim"))
    except psycopg2.Error:
        return None
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SHOW INTERCEPTS %s" % tenant)
            cols = [d.name for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    except psycopg2.Error:
        return None
    finally:
        conn.close()
    if not rows or "function" not in rows[0] or "native" not in rows[0]:
        return None
    return {r["function"]: r for r in rows if r.get("tenant") in (tenant, None)}


def show_candidates(p):
    try:
        conn = psycopg2.connect(p.dsn("pgshim"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SHOW INTERCEPT CANDIDATES")
            cols = [d.name for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]
    except psycopg2.Error:
        return []


def _num(row, col):
    try:
        return int(row.get(col) or 0)
    except (TypeError, ValueError):
        return 0


def run_compare(p, pgenv, conn_max_age, per_site=PER_SITE, settle_ms=0):
    r = manage(p.port, pgenv, "legacy_compare", "--per-site", str(per_site),
               "--settle-ms", str(settle_ms), conn_max_age=conn_max_age)
    out = r.stdout
    result = None
    for line in out.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    problems = [l for l in out.splitlines() if l.startswith(("MISMATCH", "ORM FAILURE", "  "))]
    assert r.returncode == 0 and result is not None and result["failures"] == 0, (
        "legacy_compare failed (exit %d):\n%s\n%s\npgshim log tail:\n%s"
        % (r.returncode, "\n".join(problems)[-6000:], r.stderr[-3000:], p.log_tail(30)))
    return result


def check_counters(p, modes):
    """Asserts SHOW INTERCEPTS counters match each tenant's mode; returns a summary or None when
    the admin console cannot show them yet."""
    summary = {}
    caps_configured = _caps_ini_key() is not None
    for tenant, mode in modes.items():
        st = show_intercepts(p, tenant)
        if st is None:
            return None
        summary[tenant] = {fn: {k: _num(st.get(fn, {}), k) for k in
                                ("calls", "native", "passed", "fallbacks", "shadow_compared",
                                 "shadow_mismatches", "cache_hits", "cache_misses")}
                           for fn in CALLED}
        native = {fn: v["native"] for fn, v in summary[tenant].items()}
        calls = {fn: v["calls"] for fn, v in summary[tenant].items()}
        unrecognised = [fn for fn in CALLED if calls.get(fn, 0) == 0 and
                        (caps_configured or fn != "get_web_caps_for_client")]
        assert not unrecognised, ("tenant %s: Django's SQL for %s was never recognised as a "
                                  "legacy call: %s" % (tenant, unrecognised, json.dumps(calls)))
        if mode == "off":
            assert sum(native.values()) == 0, "mode off but answered natively: %r" % native
        elif mode in ("native", "cache"):
            want = [fn for fn in CALLED if caps_configured or fn != "get_web_caps_for_client"]
            missing = [fn for fn in want if native.get(fn, 0) == 0 and
                       summary[tenant][fn]["cache_hits"] == 0]
            # legacy_compare makes exactly one call inside transaction.atomic() (fn_getassetdetails):
            # ineligible (rule 2), so passed through. Every other call Django sends is eligible
            # (autocommit, TimeZone UTC, simple protocol): answered natively, no fallback.
            # Calls whose legacy function raises an error (legacy_compare checked that PostgreSQL
            # raised the same through pgshim) are passed through on purpose, counted by reason.
            for fn in (want if mode == "native" else []):
                v = summary[tenant][fn]
                reasons = st.get(fn, {}).get("passed_reasons") or ""
                m = re.search(r"the legacy function raises an error=(\d+)", reasons)
                errors = int(m.group(1)) if m else 0
                exp_passed = (1 if fn == "fn_getassetdetails" else 0) + errors
                assert v["fallbacks"] == errors and v["passed"] == exp_passed and \
                    v["native"] + v["cache_hits"] == v["calls"] - exp_passed, (
                        "tenant %s %s: calls %d, native %d, passed %d (expected %d), fallbacks %d"
                        " (%s)\ncandidates: %s" % (tenant, fn, v["calls"], v["native"], v["passed"],
                                                   exp_passed, v["fallbacks"], reasons,
                                                   json.dumps(show_candidates(p))))
            assert not missing, (
                "tenant %s mode %s: never answered natively: %s\ncounters: %s\ncandidates: %s"
                % (tenant, mode, missing, json.dumps(summary[tenant]),
                   json.dumps([c for c in show_candidates(p) if c.get("tenant") == tenant])))
        elif mode == "shadow":
            assert sum(native.values()) == 0, "shadow mode answered natively: %r" % native
            mism = {fn: v["shadow_mismatches"] for fn, v in summary[tenant].items()
                    if v["shadow_mismatches"]}
            assert not mism, "shadow mismatches: %r\nlog:\n%s" % (mism, p.log_tail(40))
            compared = sum(v["shadow_compared"] for v in summary[tenant].values())
            assert compared > 0, "shadow mode compared nothing: %s" % json.dumps(summary[tenant])
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("mode,conn_max_age", [
    ("off", 0), ("off", 60), ("native", 0), ("native", 60), ("shadow", 60), ("mixed", 0),
])
def test_django_legacy_through_pgshim(shim, pgenv, mode, conn_max_age):
    if mode == "mixed":
        modes = {"tenant_a": "native", "tenant_b": "off"}
    else:
        modes = {t: mode for t in TENANTS}
    p = shim(modes)
    # Shadow computes the native answer after the client already has PostgreSQL's; a write the
    # client sends right after a legacy call can land before that native query runs and be
    # counted as a mismatch. Pause after such calls so the counters judge answers, not the race.
    result = run_compare(p, pgenv, conn_max_age, settle_ms=1000 if mode == "shadow" else 0)
    assert sum(s["calls"] for s in result["sites"].values()) > 100
    summary = check_counters(p, modes)
    print("legacy_compare: %d calls compared, counters: %s"
          % (sum(s["calls"] for s in result["sites"].values()), json.dumps(summary)))


@pytest.mark.slow
def test_django_legacy_cache_mode(shim, pgenv):
    if not _engine_has_cache():
        pytest.skip("cache engine not wired into pgshim yet (no proxy/cachemode.c lookups in "
                    "intercept.c), so cache mode would only repeat native")
    if not pgenv.redis_port:
        pytest.skip("harness has no Redis (start pgenv with --redis-port)")
    modes = {t: "cache" for t in TENANTS}
    p = shim(modes, redis=True)
    run_compare(p, pgenv, 60)
    run_compare(p, pgenv, 60)          # warm: the same arguments again (same seed)
    summary = check_counters(p, modes)
    if summary is not None:
        hits = sum(v["cache_hits"] for t in summary.values() for v in t.values())
        misses = sum(v["cache_misses"] for t in summary.values() for v in t.values())
        if hits == 0 and misses == 0:
            pytest.skip("cache mode answered every call correctly but counted no cache lookups "
                        "(cache engine not active in this build yet)")
        assert hits > 0, "second pass produced no cache hits: %s" % json.dumps(summary)
    print("cache counters: %s" % json.dumps(summary))
