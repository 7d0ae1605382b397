"""psql through the proxy: -c, -f with several statements, \\copy in both directions, Unix socket.

Each test runs in both pool modes. psql is run with -X (no psqlrc) and ON_ERROR_STOP so that any
server or proxy error makes psql exit non-zero.
"""

import os
import subprocess



def psql(proxy, db, *args, user="postgres", host="127.0.0.1", input=None, timeout=60):
    env = dict(os.environ, PGPASSWORD=proxy.users[user], PGCONNECT_TIMEOUT="10")
    env.pop("PGDATABASE", None)
    argv = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(proxy.port),
            "-U", user, "-d", db] + list(args)
    return subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, timeout=timeout)


def test_psql_c(proxy, testdb):
    r = psql(proxy, testdb, "-At", "-c", "select 40 + 2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "42"


def test_psql_f_multiple_statements(proxy, testdb, tmp_path, pool_mode):
    t = "psql_f_%s" % pool_mode
    script = tmp_path / "s.sql"
    script.write_text(
        "drop table if exists %(t)s;\n"
        "create table %(t)s (id int primary key, v text);\n"
        "insert into %(t)s values (1, 'one'), (2, 'two');\n"
        "begin;\n"
        "update %(t)s set v = 'uno' where id = 1;\n"
        "commit;\n"
        "select id || ':' || v from %(t)s order by id;\n"
        "select count(*) from %(t)s; select 'multi' ; \n"
        "drop table %(t)s;\n" % {"t": t})
    r = psql(proxy, testdb, "-qAt", "-f", str(script))
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if x and not x.isupper()]
    assert "1:uno" in lines and "2:two" in lines and "2" in lines and "multi" in lines, r.stdout


def test_psql_error_reported(proxy, testdb):
    r = psql(proxy, testdb, "-At", "-c", "select 1/0")
    assert r.returncode != 0
    assert "division by zero" in r.stderr


def test_psql_copy_in_and_out(proxy, testdb, tmp_path, pool_mode):
    t = "psql_copy_%s" % pool_mode
    src = tmp_path / "in.csv"
    src.write_text("".join("%d,row %d\n" % (i, i) for i in range(1, 5001)))
    dst = tmp_path / "out.csv"
    r = psql(proxy, testdb, "-At",
             "-c", "drop table if exists %s" % t,
             "-c", "create table %s (id int, v text)" % t,
             "-c", "\\copy %s from '%s' with (format csv)" % (t, src),
             "-c", "\\copy (select * from %s order by id) to '%s' with (format csv)" % (t, dst),
             "-c", "select count(*), sum(id) from %s" % t,
             "-c", "drop table %s" % t)
    assert r.returncode == 0, r.stderr
    assert "5000|12502500" in r.stdout.splitlines()
    assert dst.read_text() == src.read_text()


def test_psql_unix_socket(proxy, testdb):
    r = psql(proxy, testdb, "-At", "-c", "select 'via-socket'", host=proxy.sockdir)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "via-socket"
