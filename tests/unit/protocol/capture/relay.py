# Used once to produce ../captured_pg15.h (see that file's header); paths are those of the capture run.
# Order: start PostgreSQL on 127.0.0.1:54001 (tests/harness/pgenv), run relay.py, connect psql/rawclient.py
# through the relay's Unix socket, then: gen.py ../captured_pg15.h
# Tiny capture relay: listens on a Unix socket, forwards to PostgreSQL on 127.0.0.1:54001,
# records every chunk as (direction, hex) lines in a log file, one file per connection.
import socket, threading, sys, os
SOCK = "/tmp/pgw-pg/relay/.s.PGSQL.54001"
OUT = "/tmp/pgw-pg/cap"
os.makedirs(OUT, exist_ok=True)
try: os.unlink(SOCK)
except FileNotFoundError: pass
srv = socket.socket(socket.AF_UNIX); srv.bind(SOCK); srv.listen(8)
n = 0
def pump(src, dst, tag, log, lock):
    while True:
        try: d = src.recv(65536)
        except OSError: d = b""
        if not d:
            try: dst.shutdown(socket.SHUT_WR)
            except OSError: pass
            return
        with lock:
            log.write("%s %s\n" % (tag, d.hex())); log.flush()
        dst.sendall(d)
while True:
    c, _ = srv.accept(); n += 1
    s = socket.create_connection(("127.0.0.1", 54001))
    log = open("%s/conn%d.txt" % (OUT, n), "w"); lock = threading.Lock()
    threading.Thread(target=pump, args=(c, s, "F", log, lock), daemon=True).start()
    threading.Thread(target=pump, args=(s, c, "B", log, lock), daemon=True).start()
