# Used once to produce ../captured_pg15.h (see that file's header); paths are those of the capture run.
# Order: start PostgreSQL on 127.0.0.1:54001 (tests/harness/pgenv), run relay.py, connect psql/rawclient.py
# through the relay's Unix socket, then: gen.py ../captured_pg15.h
# Raw protocol client used once to capture genuine PostgreSQL 15 replies through relay.py.
import socket, struct, time, sys
SOCK = "/tmp/pgw-pg/relay/.s.PGSQL.54001"
def conn():
    s = socket.socket(socket.AF_UNIX); s.connect(SOCK); return s
def msg(t, body): return t + struct.pack("!I", len(body) + 4) + body
def cstr(x): return x.encode() + b"\0"
def startup(params, version=196608):
    body = struct.pack("!I", version) + b"".join(cstr(k) + cstr(v) for k, v in params) + b"\0"
    return struct.pack("!I", len(body) + 4) + body
def drain(s, until=b"Z", t=2.0):
    s.settimeout(t); buf = b""
    while True:
        try: d = s.recv(65536)
        except socket.timeout: return buf
        if not d: return buf
        buf += d
        # stop once a ReadyForQuery is the last complete message
        i = 0; last = None
        while i + 5 <= len(buf):
            l = struct.unpack("!I", buf[i+1:i+5])[0]
            if i + 1 + l > len(buf): break
            last = buf[i:i+1]; i += 1 + l
        if last == until and i == len(buf): return buf

# 1: SSLRequest and GSSENCRequest on their own connections (server answers 'N').
for code in (80877103, 80877104):
    s = conn(); s.sendall(struct.pack("!II", 8, code)); s.settimeout(2); s.recv(10); s.close()
time.sleep(0.2)

# 2: main session as trustuser.
s = conn()
s.sendall(startup([("user", "trustuser"), ("database", "postgres")]))
drain(s)
q = lambda sql: msg(b"Q", cstr(sql))
s.sendall(q("SELECT 1 AS one, NULL::text AS n, 'x'::text AS s")); drain(s)
s.sendall(q("")); drain(s)
s.sendall(q("SELECT 1/0")); drain(s)
s.sendall(q("DO $$BEGIN RAISE NOTICE 'hello %', 42; END$$")); drain(s)
s.sendall(q("LISTEN pgw_chan; NOTIFY pgw_chan, 'payload'")); drain(s)
s.sendall(q("BEGIN")); drain(s)
s.sendall(q("CREATE TEMP TABLE t(a int, b text)")); drain(s)
s.sendall(q("COPY t FROM STDIN")); drain(s, until=b"G")
s.sendall(msg(b"d", b"1\tone\n") + msg(b"d", b"2\t\\N\n") + msg(b"c", b"")); drain(s)
s.sendall(q("COPY t TO STDOUT")); drain(s)
s.sendall(q("COPY t FROM STDIN")); drain(s, until=b"G")
s.sendall(msg(b"f", cstr("client gave up"))); drain(s)
s.sendall(q("ROLLBACK")); drain(s)
# Extended protocol: Parse with one declared type, Describe S, Bind, Describe P, Execute max 1 row.
ext = (msg(b"P", cstr("st1") + cstr("SELECT g, $1::text FROM generate_series(1,3) g") + struct.pack("!HI", 1, 25))
       + msg(b"D", b"S" + cstr("st1"))
       + msg(b"B", cstr("po1") + cstr("st1") + struct.pack("!HH", 1, 0) + struct.pack("!H", 1)
             + struct.pack("!I", 3) + b"abc" + struct.pack("!HH", 1, 0))
       + msg(b"D", b"P" + cstr("po1"))
       + msg(b"E", cstr("po1") + struct.pack("!I", 1))
       + msg(b"C", b"P" + cstr("po1"))
       + msg(b"C", b"S" + cstr("st1"))
       + msg(b"S", b""))
s.sendall(ext); drain(s)
ext2 = (msg(b"P", cstr("") + cstr("SET application_name = 'pgw2'") + struct.pack("!H", 0))
        + msg(b"B", cstr("") + cstr("") + struct.pack("!HHH", 0, 0, 0))
        + msg(b"D", b"P" + cstr(""))
        + msg(b"E", cstr("") + struct.pack("!I", 0))
        + msg(b"H", b""))
s.sendall(ext2); time.sleep(0.5); drain(s, t=0.5)
s.sendall(msg(b"S", b"")); drain(s)
# FunctionCall: int4pl (oid 177) (2, 40), text args? use binary int4 args and binary result.
s.sendall(msg(b"F", struct.pack("!IHHH", 177, 1, 1, 2) + struct.pack("!Ii", 4, 2) + struct.pack("!Ii", 4, 40) + struct.pack("!H", 1))); drain(s)
s.sendall(q("SELECT pg_backend_pid()")); drain(s)
s.sendall(msg(b"X", b"")); time.sleep(0.2); s.close()

# 3: startup asking for protocol 3.5 and an unknown _pq_ option: NegotiateProtocolVersion.
s = conn(); s.sendall(startup([("user", "trustuser"), ("database", "postgres"), ("_pq_.pgw_opt", "1")], version=(3 << 16) | 5)); drain(s)
s.sendall(msg(b"X", b"")); s.close()
# 4: CancelRequest (bogus key: the server ignores it and closes).
s = conn(); s.sendall(struct.pack("!IIII", 16, 80877102, 12345, 67890)); time.sleep(0.2); s.close()
# 5: startup for a database that does not exist: ErrorResponse in the startup phase.
s = conn(); s.sendall(startup([("user", "trustuser"), ("database", "pgw_nonexistent")])); drain(s, t=1); s.close()
