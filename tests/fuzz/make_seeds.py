#!/usr/bin/python3
"""make_seeds.py: writes the seed inputs of tests/fuzz/corpus/<target>/ (seed-*; files a fuzzing
run added keep libFuzzer's hash names). Idempotent: rerun after changing a target's input format.
The seeds follow each target's input layout (see the comment at the top of fuzz_<target>.c)."""

import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def msg(tag, body):
    return tag + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def recognize_seeds():
    src = open(os.path.join(REPO, "tests", "unit", "rewrite", "test_recognize.c")).read()
    sqls = []
    for m in re.finditer(r'(?:expect_call|expect_reject|tpl_reject|expect_caps)\(\s*"((?:[^"\\]|\\.)*)"', src):
        s = m.group(1).encode().decode("unicode_escape").encode("latin-1")
        if s not in sqls:
            sqls.append(s)
    for i, s in enumerate(sqls):
        write("recognize", "q%03d" % i, b"\0" + s)
    # Extended protocol: Parse text, 0xFF, parameter count and types, then Bind values.
    ext = [
        (b"select * from fun_getjobneed($1, $2, $3)", [1, 1, 1], [b"100", b"3", b"2"]),
        (b"select * from fun_getjobneed($1::bigint, $2::bigint, $3::bigint)", [0, 0, 0], [b"100", b"3", b"2"]),
        (b"select * from fn_getassetdetails($1::timestamptz, $2)", [6, 1], [b"2024-01-02 10:30:00+00", b"3"]),
        (b"SELECT fn_getassetvsquestionset($1, $2, $3)", [1, 4, 4], [b"3", b"17", b"name"]),
        (b"select fn_get_bulist($1, $2, $3, $4::text, null::bigint[]) as buids", [1, 3, 3, 4], [b"5", b"t", b"f", b"array"]),
        (b"select * from fn_get_schedule_for_adhoc($1, $2, $3, $4, $5)", [6, 1, 1, 1, 1],
         [b"2024-01-02 10:30:00+00", b"3", b"100", b"5", b"7"]),
    ]
    for i, (sql, types, vals) in enumerate(ext):
        b = b"\x01" + sql + b"\xff" + bytes([len(types)]) + bytes(types)
        for v in vals:
            b += b"\x00" + bytes([len(v)]) + v
        write("recognize", "x%03d" % i, b + b"\x00")
        # binary int8 parameters where the type allows it
        bb = b"\x01" + sql + b"\xff" + bytes([len(types)]) + bytes(types)
        for v in vals:
            if v.isdigit():
                bb += b"\x01\x08" + struct.pack("!q", int(v))
            else:
                bb += b"\x00" + bytes([len(v)]) + v
        write("recognize", "xb%03d" % i, bb + b"\x00")


def exec_seeds():
    # call index, facts, memos, then results: kind 3 (rows), ncols, nrows, values
    for ci in range(22):
        for ncols in (1, 2, 5, 6, 12, 28, 35, 38):
            vals = b""
            for r in range(3):
                for c in range(ncols):
                    vals += b"\xfe" + bytes([(ci + r + c) % 32])
            res = bytes([3, ncols, 3]) + vals
            write("exec", "c%02d-n%02d" % (ci, ncols), bytes([ci, 0, 0]) + res * 3)
        write("exec", "c%02d-fail" % ci, bytes([ci, 0, 0, 0]))
    # memos: a BU tree with a cycle, given to the BU calls
    tree = bytes([3, 5, 3]) + b"\x012\x013\x03SPS\x01A\x06CLIENT" + b"\x013\x012\x02S3\x01B\x04SITE" \
        + b"\x015\x015\x02C5\x01C\x08CUSTOMER"
    for ci in range(8):
        write("exec", "memo-cycle-%d" % ci, bytes([ci, 0, 1]) + tree)


def protocol_seeds():
    startup = struct.pack("!I", 196608) + cstr("user") + cstr("app") + cstr("database") + cstr("tenant_a") + b"\0"
    write("protocol", "startup", b"\x00" + struct.pack("!I", len(startup) + 4) + startup)
    ssl = struct.pack("!II", 8, 80877103)
    write("protocol", "ssl-then-startup", b"\x00" + ssl + struct.pack("!I", len(startup) + 4) + startup)
    cancel = struct.pack("!IIII", 16, 80877102, 1234, 5678)
    write("protocol", "cancel", b"\x00" + cancel)
    fe = msg(b"Q", cstr("select 1")) + msg(b"P", cstr("") + cstr("select $1") + struct.pack("!hI", 1, 20)) \
        + msg(b"B", cstr("") + cstr("") + struct.pack("!hh", 1, 0) + struct.pack("!hi", 1, 1) + b"5" + struct.pack("!hh", 1, 0)) \
        + msg(b"D", b"P" + cstr("")) + msg(b"E", cstr("") + struct.pack("!i", 0)) + msg(b"S", b"") \
        + msg(b"C", b"S" + cstr("s1")) + msg(b"d", b"1\t2\n") + msg(b"c", b"") + msg(b"f", cstr("no")) \
        + msg(b"p", cstr("SCRAM-SHA-256") + struct.pack("!i", 8) + b"n,,n=,r=") + msg(b"X", b"")
    write("protocol", "frontend", b"\x01" + fe)
    be = msg(b"R", struct.pack("!I", 10) + cstr("SCRAM-SHA-256") + b"\0") + msg(b"R", struct.pack("!I", 0)) \
        + msg(b"S", cstr("TimeZone") + cstr("UTC")) + msg(b"K", struct.pack("!II", 1, 2)) + msg(b"Z", b"I") \
        + msg(b"T", struct.pack("!h", 1) + cstr("id") + struct.pack("!IhIhih", 0, 0, 20, 8, -1, 0)) \
        + msg(b"D", struct.pack("!hi", 2, 1) + b"1" + struct.pack("!i", -1)) + msg(b"C", cstr("SELECT 1")) \
        + msg(b"E", b"SERROR\0C42601\0Msyntax\0\0") + msg(b"N", b"SNOTICE\0C00000\0Mhi\0\0") \
        + msg(b"A", struct.pack("!I", 7) + cstr("ch") + cstr("pl")) + msg(b"t", struct.pack("!hI", 1, 20)) \
        + msg(b"G", b"\0" + struct.pack("!hh", 1, 0)) + msg(b"v", struct.pack("!ii", 0, 1) + cstr("_pq_.x")) \
        + msg(b"1", b"") + msg(b"2", b"") + msg(b"n", b"") + msg(b"s", b"") + msg(b"I", b"")
    write("protocol", "backend", b"\x02" + be)
    write("protocol", "scram-server", b"\x03n,,n=,r=rOprNGfwEbeRWgbNEkqO\xffc=biws,r=rOprNGfwEbeRWgbNEkqO"
          + b"A" * 24 + b",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    write("protocol", "scram-client", b"\x04r=AAAAAAAAAAAAAAAAAAAAAAAAxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
          + b"\xffv=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    write("protocol", "secret", b"\x05SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
          + b"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:HZbuOlKbWl+eR8AfIposuKbhX30QCWRZS5FBFw9yTNs=")


def cache_seeds():
    desc = msg(b"T", struct.pack("!h", 2) + cstr("id") + struct.pack("!IhIhih", 0, 0, 20, 8, -1, 0)
               + cstr("name") + struct.pack("!IhIhih", 0, 0, 25, -1, -1, 0))
    body = msg(b"D", struct.pack("!hi", 2, 1) + b"1" + struct.pack("!i", -1)) \
        + msg(b"N", b"SNOTICE\0C00000\0Mhi\0\0") + msg(b"C", cstr("SELECT 1"))
    write("cache", "rows", b"\x01" + desc + b"\xff" + body)
    write("cache", "error", b"\x01\xff" + msg(b"E", b"SERROR\0C22004\0Mnull\0\0"))
    write("cache", "raw", b"\x00PGSC\x02" + b"\0" * 60)


if __name__ == "__main__":
    recognize_seeds()
    exec_seeds()
    protocol_seeds()
    cache_seeds()
