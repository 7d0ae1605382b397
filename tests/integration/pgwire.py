"""pgwire: a tiny raw PostgreSQL v3 client for tests that must see exact protocol messages.

libpq-based drivers hide the SQLSTATE of a failed login and cannot send malformed input; this
module speaks the protocol directly over a socket: startup, cleartext/MD5/SCRAM-SHA-256 auth,
simple Query, raw bytes. It is written from the protocol documentation for the tests only.

Invariants: every read has a timeout (the socket's), so a silent proxy fails the test instead of
hanging it; messages are returned as (type_byte, payload_bytes) without interpretation unless a
helper is asked to decode them.
"""

import base64
import hashlib
import hmac
import os
import socket
import struct

PROTOCOL_3 = 196608


class WireError(Exception):
    pass


def error_fields(payload):
    """Decodes an ErrorResponse/NoticeResponse payload into {field_char: value}."""
    out = {}
    i = 0
    while i < len(payload) and payload[i] != 0:
        code = chr(payload[i])
        end = payload.index(b"\0", i + 1)
        out[code] = payload[i + 1:end].decode("utf-8", "replace")
        i = end + 1
    return out


def ext_batch(sql, params, oids=()):
    """Unnamed Parse (parameter type OIDs, 0 = unspecified), Bind (text values, None = NULL),
    Describe portal, Execute, Sync: one extended-protocol batch as bytes."""
    def msg(t, body):
        return t + struct.pack("!I", len(body) + 4) + body
    parse = b"\0" + sql.encode() + b"\0" + struct.pack("!H", len(oids)) + \
        b"".join(struct.pack("!I", o) for o in oids)
    bind = b"\0\0" + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for v in params:
        bind += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v.encode())) + v.encode()
    bind += struct.pack("!H", 0)
    return (msg(b"P", parse) + msg(b"B", bind) + msg(b"D", b"P\0") +
            msg(b"E", b"\0" + struct.pack("!I", 0)) + msg(b"S", b""))


class Conn:
    def __init__(self, host, port, timeout=10.0, unix_path=None):
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix_path)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.params = {}
        self.backend_key = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def send_msg(self, type_byte, payload=b""):
        self.send(type_byte + struct.pack("!I", len(payload) + 4) + payload)

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WireError("connection closed by peer")
            self.buf += chunk

    def read_msg(self):
        """Returns (type_byte, payload). Raises WireError on EOF, socket.timeout on silence."""
        self._fill(5)
        t = self.buf[:1]
        (ln,) = struct.unpack("!I", self.buf[1:5])
        self._fill(1 + ln)
        payload = self.buf[5:1 + ln]
        self.buf = self.buf[1 + ln:]
        return t, payload

    def at_eof(self, timeout=2.0):
        """True if the peer closes the connection (after any pending bytes) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    # ---- startup and auth ----
    def startup(self, user, database, password=None, **params):
        """Logs in. Returns None on success (after ReadyForQuery) or the ErrorResponse fields."""
        body = struct.pack("!I", PROTOCOL_3)
        kv = {"user": user, "database": database}
        kv.update(params)
        for k, v in kv.items():
            body += k.encode() + b"\0" + v.encode() + b"\0"
        body += b"\0"
        self.send(struct.pack("!I", len(body) + 4) + body)
        scram = None
        while True:
            t, p = self.read_msg()
            if t == b"E":
                return error_fields(p)
            if t == b"R":
                (code,) = struct.unpack("!I", p[:4])
                if code == 0:
                    continue
                if code == 3:
                    self.send_msg(b"p", (password or "").encode() + b"\0")
                elif code == 5:
                    salt = p[4:8]
                    inner = hashlib.md5(((password or "") + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    self.send_msg(b"p", b"md5" + outer.encode() + b"\0")
                elif code == 10:
                    mechs = [m for m in p[4:].split(b"\0") if m]
                    if b"SCRAM-SHA-256" not in mechs:
                        raise WireError("no SCRAM-SHA-256 in %r" % mechs)
                    scram = _Scram(password or "")
                    first = scram.client_first()
                    self.send_msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
                elif code == 11:
                    self.send_msg(b"p", scram.client_final(p[4:]))
                elif code == 12:
                    scram.verify_server_final(p[4:])
                else:
                    raise WireError("unsupported auth request %d" % code)
            elif t == b"S":
                k, v, _ = p.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
            elif t == b"K":
                self.backend_key = struct.unpack("!II", p)
            elif t == b"Z":
                return None
            elif t == b"N":
                continue
            else:
                raise WireError("unexpected message %r during startup" % t)

    def query(self, sql):
        """Simple Query; returns (rows as lists of str/None, command tags, error fields or None)."""
        self.send_msg(b"Q", sql.encode() + b"\0")
        rows, tags, err = [], [], None
        while True:
            t, p = self.read_msg()
            if t == b"D":
                (n,) = struct.unpack("!H", p[:2])
                i, row = 2, []
                for _ in range(n):
                    (ln,) = struct.unpack("!i", p[i:i + 4])
                    i += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(p[i:i + ln].decode())
                        i += ln
                rows.append(row)
            elif t == b"C":
                tags.append(p.rstrip(b"\0").decode())
            elif t == b"E":
                err = error_fields(p)
            elif t == b"Z":
                return rows, tags, err


class _Scram:
    """Client side of SCRAM-SHA-256 without channel binding (RFC 5802/7677)."""

    def __init__(self, password):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()

    def client_first(self):
        self.first_bare = "n=,r=" + self.nonce
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first):
        sf = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in sf.split(","))
        if not attrs["r"].startswith(self.nonce):
            raise WireError("server nonce does not extend ours")
        salt = base64.b64decode(attrs["s"])
        iters = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iters)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = "c=biws,r=" + attrs["r"]
        self.auth_message = ",".join([self.first_bare, sf, without_proof]).encode()
        sig = hmac.new(stored_key, self.auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_sig = hmac.new(server_key, self.auth_message, hashlib.sha256).digest()
        return (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()

    def verify_server_final(self, data):
        attrs = dict(kv.split("=", 1) for kv in data.decode().split(","))
        if base64.b64decode(attrs.get("v", "")) != self.server_sig:
            raise WireError("bad server signature")
