# Used once to produce ../captured_pg15.h (see that file's header); paths are those of the capture run.
# Order: start PostgreSQL on 127.0.0.1:54001 (tests/harness/pgenv), run relay.py, connect psql/rawclient.py
# through the relay's Unix socket, then: gen.py ../captured_pg15.h
import struct, sys
def split(data, startup):
    out = []; i = 0
    while i < len(data):
        if startup:
            l = struct.unpack("!I", data[i:i+4])[0]; out.append(data[i:i+l]); i += l
            code = struct.unpack("!I", out[-1][4:8])[0]
            startup = code in (80877103, 80877104)  # still startup after an SSL/GSS request
        else:
            l = struct.unpack("!I", data[i+1:i+5])[0]; out.append(data[i:i+1+l]); i += 1 + l
    return out
def load(path):
    f = b""; b = b""
    for line in open(path):
        d, h = line.split(); (f, b)
        if d == "F": f += bytes.fromhex(h)
        else: b += bytes.fromhex(h)
    return f, b
if __name__ == "__main__":
    for p in sys.argv[1:]:
        f, b = load(p)
        print("==", p, len(f), len(b))
        try:
            for m in split(f, True): print("  F", m[:1] if m[:1].isalpha() else "startup", m[:60])
        except Exception as e: print("  F err", e)
        try:
            for m in split(b, False): print("  B", m[:1], m[:60])
        except Exception as e: print("  B err", e, b[:10])
