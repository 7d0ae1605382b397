"""Raw-socket protocol behaviour of the proxy (pgwire.py): SSL/GSSENC negotiation, the proxy's
own BackendKeyData, startup parameters reported back, extended-protocol batches.
"""

import struct

import pgwire

SSL_REQUEST = struct.pack("!II", 8, 80877103)
GSSENC_REQUEST = struct.pack("!II", 8, 80877104)


def _raw(proxy):
    return pgwire.Conn("127.0.0.1", proxy.port)


def test_sslrequest_answered_n_then_login(proxy, testdb):
    c = _raw(proxy)
    try:
        c.send(SSL_REQUEST)
        assert c.sock.recv(1) == b"N"
        assert c.startup("postgres", testdb, proxy.users["postgres"]) is None
        rows, tags, err = c.query("select 'after ssl refusal'")
        assert err is None and rows == [["after ssl refusal"]]
    finally:
        c.close()


def test_gssencrequest_answered_n_then_login(proxy, testdb):
    c = _raw(proxy)
    try:
        c.send(GSSENC_REQUEST)
        assert c.sock.recv(1) == b"N"
        assert c.startup("postgres", testdb, proxy.users["postgres"]) is None
    finally:
        c.close()


def test_own_backend_key_and_parameters(proxy, testdb):
    c = _raw(proxy)
    try:
        assert c.startup("postgres", testdb, proxy.users["postgres"],
                         application_name="rawclient") is None
        assert c.backend_key is not None, "no BackendKeyData"
        for k in ("server_version", "client_encoding", "DateStyle", "TimeZone",
                  "integer_datetimes", "standard_conforming_strings"):
            assert k in c.params, (k, c.params)
        assert c.params["application_name"] == "rawclient"
        rows, _, err = c.query("select pg_backend_pid(), current_setting('application_name')")
        assert err is None
        assert rows[0][1] == "rawclient"
        assert int(rows[0][0]) != c.backend_key[0], "proxy handed out the server's own key"
    finally:
        c.close()


def test_pipelined_extended_batches(proxy, testdb):
    """Three Sync-delimited batches sent in one write, the middle one failing: replies come back
    in order, the failure is confined to its batch."""
    c = _raw(proxy)
    try:
        assert c.startup("postgres", testdb, proxy.users["postgres"]) is None
        c.send(pgwire.ext_batch("select $1::int + 1", ["41"]) +
               pgwire.ext_batch("select 1/$1::int", ["0"]) +
               pgwire.ext_batch("select $1::text", ["third"]))
        seen = []
        zs = 0
        while zs < 3:
            t, p = c.read_msg()
            if t == b"D":
                (ln,) = struct.unpack("!i", p[2:6])
                seen.append(("D", p[6:6 + ln].decode()))
            elif t == b"E":
                seen.append(("E", pgwire.error_fields(p)["C"]))
            elif t == b"Z":
                zs += 1
                seen.append(("Z", p.decode()))
        assert seen == [("D", "42"), ("Z", "I"), ("E", "22012"), ("Z", "I"), ("D", "third"), ("Z", "I")], seen
    finally:
        c.close()


def test_terminate_is_clean(proxy, testdb):
    c = _raw(proxy)
    try:
        assert c.startup("postgres", testdb, proxy.users["postgres"]) is None
        c.send_msg(b"X")
        assert c.at_eof(timeout=5)
    finally:
        c.close()
