"""proxyctl: start and stop the servers the integration suite and the pooler benchmark talk to.

One module knows how to run either proxy under test -- pgshim or PgBouncer 1.18 -- from the same
description (pool mode, pool size, auth type, users), so every test runs unchanged against both
(PROXY=pgshim|pgbouncer). It also wraps tests/harness/pgenv for the PostgreSQL server.

Invariants:
  - Every process started here is stopped by its own PID (never by name), SIGTERM first, then
    SIGKILL after a bound; stop() is idempotent and safe to call from teardown after a failure.
  - A proxy's stdout+stderr go to one log file in its instance directory; sanitizer reports
    (ASan, UBSan, LSan) found there are returned by sanitizer_report() so the caller can fail.
  - The ini file differs between the proxies only in the section name ([pgshim] vs [pgbouncer])
    and in PgBouncer-only settings pgshim does not have to understand.
  - PgBouncer refuses to run as root, so it runs as postgres via setpriv (which execs, so the
    PID we hold is PgBouncer's own); its instance directory is owned by postgres.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PGENV = os.path.join(REPO, "tests", "harness", "pgenv")

# Roles and passwords created by tests/harness/pgenv (create_roles); pg_hba gives md5user md5,
# pwuser password, trustuser trust and everyone else scram-sha-256 on 127.0.0.1.
HARNESS_PASSWORDS = {
    "postgres": "postgres",
    "md5user": "md5pass",
    "pwuser": "pwpass",
    "trustuser": "trustpass",   # trust on the server; the proxy still checks this one
    "app": "apppass",
}

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",            # UBSan
    "SUMMARY: AddressSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "ERROR: ThreadSanitizer",
)


def wait_port(host, port, timeout=15.0, proc=None):
    """Returns True once host:port accepts a TCP connection, False on timeout or if proc died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def port_free(port, host="127.0.0.1"):
    with socket.socket() as s:
        try:
            s.connect((host, port))
            return False
        except OSError:
            return True


class PgEnv:
    """A PostgreSQL (+ Redis) started by tests/harness/pgenv, or one already running (env)."""

    def __init__(self, pg_port, redis_port=None, workdir=None):
        self.pg_port = int(pg_port)
        self.redis_port = int(redis_port) if redis_port else None
        self.dir = workdir
        self.owned = False
        self.env = {}

    @classmethod
    def from_environment(cls):
        """An already running harness (tests/run exports PGENV_DIR etc.), or None."""
        if not os.environ.get("PGENV_DIR") or not os.environ.get("PGPORT"):
            return None
        e = cls(os.environ["PGPORT"], os.environ.get("REDIS_PORT"), os.environ["PGENV_DIR"])
        e.env = {k: os.environ[k] for k in ("PGENV_DIR", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD",
                                            "PGENV_SOCKDIR", "REDIS_PORT") if k in os.environ}
        if not wait_port("127.0.0.1", e.pg_port, timeout=2):
            return None
        return e

    def start(self):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="pgshim-it-pg-")
        args = [PGENV, "start", "--dir", self.dir, "--pg-port", str(self.pg_port)]
        if self.redis_port:
            args += ["--redis-port", str(self.redis_port)]
        else:
            args += ["--no-redis"]
        out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=180)
        self.owned = True
        if out.returncode != 0:
            raise RuntimeError("pgenv start failed:\n" + out.stderr[-3000:])
        for line in out.stdout.splitlines():
            line = line.strip()
            if line.startswith("export "):
                k, _, v = line[len("export "):].partition("=")
                self.env[k] = v.strip("'\"")
        return self

    def stop(self):
        if self.owned and self.dir:
            subprocess.run([PGENV, "stop", "--dir", self.dir], timeout=60,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.owned = False

    def restart_pg(self):
        subprocess.run([PGENV, "restart-pg", "--dir", self.dir], timeout=120, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_pg(self):
        """Stops PostgreSQL only (fast shutdown: backends get FATAL 57P01); Redis keeps running."""
        subprocess.run([PGENV, "stop-pg", "--dir", self.dir], timeout=120, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start_pg(self):
        """Starts PostgreSQL again after stop_pg() and waits until it accepts connections."""
        subprocess.run([PGENV, "start-pg", "--dir", self.dir], timeout=120, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.pg_port, timeout=30)

    @property
    def sockdir(self):
        return self.env.get("PGENV_SOCKDIR", os.path.join(self.dir or "", "sock"))

    def dsn(self, dbname="postgres", user="postgres", password=None):
        """Direct (not via the proxy) libpq DSN to PostgreSQL over TCP."""
        pw = HARNESS_PASSWORDS.get(user, "") if password is None else password
        return ("host=127.0.0.1 port=%d dbname=%s user=%s password=%s connect_timeout=10"
                % (self.pg_port, dbname, user, pw))


class Proxy:
    """One proxy process (pgshim or PgBouncer) serving every database on one PostgreSQL.

    users: dict user -> userlist secret (plaintext password, or an md5/SCRAM secret string).
    extra: dict of further [pgshim]/[pgbouncer] options (PgBouncer option names).
    """

    def __init__(self, kind, binary, port, pg_port, pool_mode="session", pool_size=20,
                 auth_type="scram-sha-256", users=None, max_client_conn=400, extra=None,
                 basedir=None, name=None, env=None, sections=None):
        assert kind in ("pgshim", "pgbouncer"), kind
        self.kind = kind
        self.binary = binary
        self.port = int(port)
        self.pg_port = int(pg_port)
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.auth_type = auth_type
        self.users = dict(users if users is not None else HARNESS_PASSWORDS)
        self.max_client_conn = max_client_conn
        self.extra = dict(extra or {})
        self.name = name or "%s-%s-%d" % (kind, pool_mode, self.port)
        self.basedir = basedir or tempfile.gettempdir()
        self.env = env
        # Further ini sections (pgshim only), e.g. {"intercept": [("all", "off")]}.
        self.sections = dict(sections or {})
        self.dir = None
        self.proc = None
        self.log_path = None
        self.log_offset = 0
        self.exit_status = None

    # ---- configuration ----
    def _userlist(self):
        lines = []
        for user, secret in sorted(self.users.items()):
            lines.append('"%s" "%s"' % (user.replace('"', '""'), secret.replace('"', '""')))
        return "\n".join(lines) + "\n"

    def ini_text(self):
        section = "pgshim" if self.kind == "pgshim" else "pgbouncer"
        opts = [
            ("listen_addr", "127.0.0.1"),
            ("listen_port", str(self.port)),
            ("unix_socket_dir", self.sockdir),
            ("auth_type", self.auth_type),
            ("auth_file", os.path.join(self.dir, "userlist.txt")),
            ("pool_mode", self.pool_mode),
            ("default_pool_size", str(self.pool_size)),
            ("max_client_conn", str(self.max_client_conn)),
            # psycopg/pgbench/JDBC-style clients send these; PgBouncer needs them listed.
            ("ignore_startup_parameters", "extra_float_digits,options"),
        ]
        if self.kind == "pgbouncer":
            opts += [
                ("pidfile", os.path.join(self.dir, "pgbouncer.pid")),
                ("admin_users", "postgres"),
                ("server_reset_query", "DISCARD ALL"),
                ("unix_socket_mode", "0777"),
                ("log_connections", "0"),
                ("log_disconnections", "0"),
            ]
        for k, v in self.extra.items():
            opts = [(a, b) for (a, b) in opts if a != k]
            if v is not None:
                opts.append((k, str(v)))
        body = ["; written by tests/integration/proxyctl.py for %s" % self.name, "[databases]",
                "* = host=127.0.0.1 port=%d" % self.pg_port, "", "[%s]" % section]
        body += ["%s = %s" % (k, v) for k, v in opts]
        if self.kind == "pgshim":
            for name, items in self.sections.items():
                body += ["", "[%s]" % name] + ["%s = %s" % (k, v) for k, v in items]
        return "\n".join(body) + "\n"

    @property
    def sockdir(self):
        return os.path.join(self.dir, "sock")

    # ---- life cycle ----
    def start(self, timeout=20.0, keep_files=False):
        """Starts in a new instance directory; keep_files=True restarts after stop() in the
        same directory with the ini and userlist left as they are (e.g. after SAVE)."""
        if not port_free(self.port):
            raise RuntimeError("port %d already in use before starting %s" % (self.port, self.name))
        if not (keep_files and self.dir and os.path.isdir(self.dir)):
            self.dir = tempfile.mkdtemp(prefix="pgshim-it-%s-" % self.kind, dir=self.basedir)
            os.makedirs(self.sockdir)
            with open(os.path.join(self.dir, "userlist.txt"), "w") as f:
                f.write(self._userlist())
            self.ini_path = os.path.join(self.dir, "%s.ini" % self.kind)
            with open(self.ini_path, "w") as f:
                f.write(self.ini_text())
            self.log_path = os.path.join(self.dir, "proxy.log")
            self.log_offset = 0
        env = dict(os.environ if self.env is None else self.env)
        if self.kind == "pgshim":
            env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
            argv = [self.binary, "-c", self.ini_path]
        else:
            pw = pwd.getpwnam("postgres")
            for root, dirs, files in os.walk(self.dir):
                for n in [root] + [os.path.join(root, x) for x in files]:
                    os.chown(n, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir, 0o755)
            argv = [self.binary, self.ini_path]
            if os.getuid() == 0:
                argv = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"] + argv
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         env=env, start_new_session=True)
        finally:
            logf.close()
        if not wait_port("127.0.0.1", self.port, timeout=timeout, proc=self.proc):
            tail = self.log_tail()
            self.stop()
            raise RuntimeError("%s did not listen on %d within %.0fs (exit %s); log:\n%s"
                               % (self.name, self.port, timeout, self.exit_status, tail))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rewrite_ini(self, text=None, **changes):
        """Rewrites the ini file: `text` as given, or the generated one with `changes` applied to
        the extra options (value None removes an option). Does not signal the proxy."""
        if text is None:
            self.extra.update(changes)
            text = self.ini_text()
        with open(self.ini_path, "w") as f:
            f.write(text)
        if self.kind == "pgbouncer" and os.getuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.ini_path, pw.pw_uid, pw.pw_gid)

    def signal(self, sig):
        """Sends sig to the proxy process (SIGHUP reloads the ini in both proxies)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, grace=5.0):
        """SIGTERM, wait, then SIGKILL. Returns the exit status (None if never started)."""
        if self.proc is None:
            return self.exit_status
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                # SIGINT means "exit at once" for both proxies; still give LSan time to report.
                try:
                    self.proc.send_signal(signal.SIGINT)
                    self.proc.wait(timeout=grace)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        self.exit_status = self.proc.returncode
        self.proc = None
        return self.exit_status

    def kill(self):
        """Hard kill, used by the hang watchdog so that blocked clients get an error."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGABRT if self.kind == "pgshim" else signal.SIGKILL)
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.proc.kill()

    def cleanup(self):
        if self.dir and os.path.isdir(self.dir) and not os.environ.get("PGSHIM_KEEP_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- logs ----
    def log_text(self, since_offset=0):
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(since_offset)
            return f.read().decode("utf-8", "replace")

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except (OSError, TypeError):
            return 0

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    def sanitizer_report(self, since_offset=0):
        """The sanitizer part of the log since since_offset, or '' when there is none."""
        text = self.log_text(since_offset)
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                start = text.rfind("\n", 0, max(0, i - 200)) + 1
                return text[start:start + 6000]
        return ""

    # ---- client helpers ----
    def dsn(self, dbname="postgres", user="postgres", password=None, host="127.0.0.1", **kw):
        pw = self.users.get(user, "") if password is None else password
        parts = {"host": host, "port": self.port, "dbname": dbname, "user": user,
                 "password": pw, "connect_timeout": 10}
        parts.update(kw)
        return " ".join("%s=%s" % (k, _quote(v)) for k, v in parts.items())

    def url(self, dbname="postgres", user="postgres", password=None):
        pw = self.users.get(user, "") if password is None else password
        return "postgresql://%s:%s@127.0.0.1:%d/%s" % (user, pw, self.port, dbname)


def _quote(v):
    v = str(v)
    if v == "" or any(c in v for c in " '\\"):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return v


def find_pgshim_binary(release=False):
    """PGSHIM_BIN, else the newest build*/pgshim in the repository, else None. With release=True
    (benchmarks) build/pgshim comes first: after tests/run the newest binary is the ASan one, whose
    timings say nothing about a production build."""
    b = os.environ.get("PGSHIM_BIN")
    if b:
        return os.path.abspath(b)
    if release:
        p = os.path.join(REPO, "build", "pgshim")
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    cands = []
    for d in os.listdir(REPO):
        p = os.path.join(REPO, d, "pgshim")
        if d.startswith("build") and os.path.isfile(p) and os.access(p, os.X_OK):
            cands.append((os.path.getmtime(p), p))
    return max(cands)[1] if cands else None


def find_pgbouncer_binary():
    return os.environ.get("PGBOUNCER_BIN") or shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
