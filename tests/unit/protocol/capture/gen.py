# Used once to produce ../captured_pg15.h (see that file's header); paths are those of the capture run.
# Order: start PostgreSQL on 127.0.0.1:54001 (tests/harness/pgenv), run relay.py, connect psql/rawclient.py
# through the relay's Unix socket, then: gen.py ../captured_pg15.h
# conn1/conn2 came from:
#   PGPASSWORD=pgw-scram-pass psql "host=/tmp/pgw-pg/relay port=54001 user=pgw_scram dbname=postgres application_name=pgw" -Atc "SELECT 1 AS one"
#   PGPASSWORD=pgw-md5-pass psql "host=/tmp/pgw-pg/relay port=54001 user=md5user dbname=postgres" -Atc "SELECT 2"
# after: SET password_encryption='scram-sha-256'; CREATE ROLE pgw_scram LOGIN PASSWORD 'pgw-scram-pass';
#        SET password_encryption='md5'; CREATE ROLE md5user LOGIN PASSWORD 'pgw-md5-pass';
#        CREATE ROLE trustuser LOGIN SUPERUSER;   (conn3-8 come from rawclient.py)
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from split import load
names = [("conn1", "scram", "psql 15 logging in as a SCRAM role (password 'pgw-scram-pass'), SELECT 1 AS one"),
         ("conn2", "md5", "psql 15 logging in as an MD5 role md5user (password 'pgw-md5-pass'), SELECT 2"),
         ("conn3", "ssl", "raw SSLRequest (the server answered the single byte 'N')"),
         ("conn4", "gssenc", "raw GSSENCRequest (the server answered the single byte 'G')"),
         ("conn5", "session", "raw client as trust user: simple queries, empty query, error, notice, LISTEN/NOTIFY, COPY in/out/fail, extended protocol with PortalSuspended, FunctionCall"),
         ("conn6", "negotiate", "raw StartupMessage asking for protocol 3.5 with an unknown _pq_ option"),
         ("conn7", "cancel", "raw CancelRequest"),
         ("conn8", "fatal", "raw StartupMessage for a database that does not exist")]
out = ["/*",
" * Byte streams captured once from a real PostgreSQL 15.20 (Debian 15.20-0+deb12u1) on loopback,",
" * through a tiny Python relay that listened on a Unix socket, forwarded to the server's TCP port",
" * and logged every chunk per direction (psql/libpq 15 and a raw Python client on the client side;",
" * pg_hba: scram-sha-256 on TCP, md5 for md5user, trust for trustuser). `_fe` arrays are what the",
" * client sent, `_be` arrays what the server sent back, each a concatenation of whole messages.",
" * Role secrets at capture time (read from pg_authid.rolpassword):",
" *   pgw_scram: SCRAM-SHA-256$4096:7v/m3i1QnH3ckNZgvBHSdg==$ogYS7wv0UrO44bH8LPodiy3UsPtz+H6oCXKoACfXfV4=:ZGGLBFEu0f3VJqVB1Eq2Y7M2KRDI+Q9+sEjVJEj3YNM=",
" *   md5user:   md5008da12d5b247b17da5496b0e3bb8971",
" * Do not edit by hand: the bytes are only meaningful as captured.",
" */",
"#ifndef PGW_TEST_CAPTURED_PG15_H", "#define PGW_TEST_CAPTURED_PG15_H", "#include <stdint.h>", ""]
for conn, name, desc in names:
    f, b = load("/tmp/pgw-pg/cap/%s.txt" % conn)
    out.append("/* %s */" % desc)
    for suffix, data in (("fe", f), ("be", b)):
        if not data or (len(data) == 1): continue
        out.append("static const uint8_t cap_%s_%s[%d] = {" % (name, suffix, len(data)))
        for i in range(0, len(data), 16):
            out.append("    " + " ".join("0x%02x," % x for x in data[i:i+16]))
        out.append("};")
    out.append("")
out.append("#endif")
open(sys.argv[1], "w").write("\n".join(out) + "\n")
