#!/usr/bin/python3
"""Cross-checks test_recognize.c against a real PostgreSQL 15 (not part of the criterion run).

Every statement the unit tests expect rw to ACCEPT must run on PostgreSQL with stand-in functions
of the spec's exact signatures, and for scalar/SETOF-scalar functions return one column with the
name and type OID the test expects (colname, result_oid). Every statement the tests expect rw to
REFUSE is run too and its outcome printed (a refusal is always safe: the statement passes through).
Also checks ParameterDescription of the extended-protocol shapes psycopg 3 sends.

Server from the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD); creates and drops the
database rw_crosscheck. Usage: tests/unit/rewrite/crosscheck_pg.py [-v]
"""
import os, re, sys
import psycopg2
import psycopg
from psycopg import pq

HERE = os.path.dirname(os.path.abspath(__file__))
STANDINS = """
create function fn_menupbt(p_buid bigint default 1, anyelement anyelement default 'jsonb'::text) returns anyelement language plpgsql as $$ begin return null; end $$;
create function fn_mendownbt(p_buid bigint default 1, anyelement anyelement default 'jsonb'::text) returns anyelement language plpgsql as $$ begin return null; end $$;
create function fn_menallbt(p_buid bigint default 1, anyelement anyelement default 'jsonb'::text) returns anyelement language plpgsql as $$ begin return null; end $$;
create function fn_get_bulist(p_buid bigint default 1, p_up boolean default true, p_dn boolean default true, phrase text default 'jsonb'::text, anyelement anyelement default null::jsonb) returns setof anyelement language plpgsql as $$ begin return; end $$;
create function fn_getbulist_basedon_idnf(p_buid bigint, p_cus boolean default true, p_si boolean default true) returns text language plpgsql as $$ begin return ''; end $$;
create function fn_getassetvsquestionset(_siteid bigint, _assetcode text, _type text) returns text language plpgsql as $$ begin return ''; end $$;
create function fn_getassetdetails(_mdtz timestamptz, _siteid bigint) returns table(id bigint) language plpgsql as $$ begin return; end $$;
create function fun_getjobneed(_peopleid bigint, _buid bigint, _clientid bigint) returns table(id bigint) language plpgsql as $$ begin return; end $$;
create function fun_getexttourjobneed(_peopleid bigint, _buid bigint, _clientid bigint) returns table(id bigint) language plpgsql as $$ begin return; end $$;
create function fn_get_schedule_for_adhoc(_plandatetime timestamptz, _buid bigint, _peopleid bigint, _assetid bigint, _questionsetid bigint) returns table(bu_id bigint) language plpgsql as $$ begin return; end $$;
create table t(x int);
"""
PARAMS = [  # (sql, declared OIDs, ParameterDescription rw reports, or None if rw refuses)
    ("select * from fn_getassetdetails($1, $2)", [0, 0], [1184, 20]),
    ("select * from fn_getassetdetails($1, $2)", [1184, 21], [1184, 21]),
    ("SELECT fn_getassetvsquestionset($1, $2, $3)", [21, 0, 0], [21, 25, 25]),
    ("select * from fun_getjobneed($1, $2, $3)", [21, 21, 20], [21, 21, 20]),
    ("SELECT fn_getbulist_basedon_idnf($1, $2, $3)", [21, 16, 0], [21, 16, 16]),
    ("select fn_get_bulist($1, true, true, 'array'::text, null::bigint[]) as buids", [0], [20]),
    ("select fn_menupbt($1::bigint, $2::text)", [0, 0], [20, 25]),
    ("select fn_get_bulist($1, $2, $3, $4, $5)", [20, 16, 16, 25, 1016], [20, 16, 16, 25, 1016]),
    ("select * from fn_menupbt($1, $2)", [21, 0], None),
    ("select fn_get_bulist($1, $2, $3, $4, $5)", [20, 16, 16, 25, 0], None),
]


def c_strings(lits):
    out = b""
    for l in re.findall(r'"((?:[^"\\]|\\.)*)"', lits):
        out += eval('b"' + l + '"')
    return out.decode()


def main():
    verbose = "-v" in sys.argv
    src = open(os.path.join(HERE, "test_recognize.c")).read()
    lit = r'((?:\s*"(?:[^"\\]|\\.)*"\s*)+)'
    accepted = [(c_strings(m.group(1)), m.group(2), int(m.group(3)))
                for m in re.finditer(r'expect_call\(' + lit + r',\s*FN\(\w+\),\s*\w+,\s*"([^"]*)",\s*(\d+)', src)]
    refused = [(c_strings(m.group(1)), m.group(2))
               for m in re.finditer(r'expect_reject\(' + lit + r',\s*RW_REASON_(\w+)', src)]
    admin = psycopg2.connect(dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute("drop database if exists rw_crosscheck")
    admin.cursor().execute("create database rw_crosscheck")
    problems = 0
    try:
        conn = psycopg2.connect(dbname="rw_crosscheck")
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute(STANDINS)
        for sql, col, oid in accepted:
            try:
                cur.execute(sql.replace("%", "%%"))
                d = cur.description
                if oid and (len(d) != 1 or d[0].name != col or d[0].type_code != oid):
                    print("MISMATCH", repr(sql), [(x.name, x.type_code) for x in d], "rw:", col, oid)
                    problems += 1
            except Exception as e:
                print("PostgreSQL fails a statement rw accepts:", repr(sql), str(e).splitlines()[0])
                problems += 1
        pg_fails = 0
        for sql, reason in refused:
            try:
                cur.execute(sql.replace("%", "%%"))
                res = "runs"
            except Exception as e:
                res = "fails: " + str(e).splitlines()[0]
                pg_fails += 1
            if verbose:
                print(f"refused ({reason}); PostgreSQL {res[:60]}: {sql[:70]!r}")
        conn.close()
        pc = psycopg.connect(dbname="rw_crosscheck", autocommit=True).pgconn
        for i, (sql, oids, want) in enumerate(PARAMS):
            r = pc.prepare(f"s{i}".encode(), sql.encode(), oids)
            if r.status != pq.ExecStatus.COMMAND_OK:
                got = None
            else:
                d = pc.describe_prepared(f"s{i}".encode())
                got = [d.param_type(k) for k in range(d.nparams)]
            if want is not None and got != want:
                print("ParameterDescription differs:", sql, oids, "PostgreSQL", got, "rw", want)
                problems += 1
        pc.finish()
        print(f"{len(accepted)} accepted statements and {len(PARAMS)} Parse shapes checked: "
              f"{problems} problems; {len(refused)} refused statements, {pg_fails} of which "
              f"PostgreSQL fails too")
    finally:
        admin.cursor().execute("drop database if exists rw_crosscheck")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
