# Developer smoke check: malformed and edge-case startup/normal-phase input over raw sockets.
# Usage: raw_protocol.py PORT  (the second half needs auth_type trust)
# raw-socket checks: SSLRequest, malformed startup, unknown startup param, garbage mid-stream,
# oversized length, wrong password; every case must end with an ErrorResponse (or 'N') and close.
import socket, struct, sys, hashlib
port=int(sys.argv[1])
def conn():
    s=socket.create_connection(("127.0.0.1",port)); s.settimeout(5); return s
def recv_all(s):
    out=b""
    try:
        while True:
            d=s.recv(65536)
            if not d: break
            out+=d
    except socket.timeout:
        out+=b"<TIMEOUT>"
    return out
def startup(params):
    body=struct.pack("!I",196608)+b"".join(k.encode()+b"\0"+v.encode()+b"\0" for k,v in params.items())+b"\0"
    return struct.pack("!I",len(body)+4)+body
def sqlstate(b):
    i=b.find(b"C",b.find(b"E"))
    j=b.find(b"\0C")
    return b[j+2:j+7].decode() if j>=0 else None
res={}
s=conn(); s.sendall(struct.pack("!II",8,80877103)); res["ssl"]=s.recv(1); s.close()
s=conn(); s.sendall(struct.pack("!II",8,80877104)); res["gss"]=s.recv(1); s.close()
s=conn(); s.sendall(struct.pack("!I",3)+b"xxxx"); r=recv_all(s); res["bad_len"]=sqlstate(r); s.close()
s=conn(); s.sendall(startup({"user":"postgres","database":"postgres","foo":"bar"})); r=recv_all(s); res["unknown_param"]=(sqlstate(r), b"foo" in r)
s=conn(); s.sendall(startup({"user":"postgres","database":"postgres","extra_float_digits":"3"})); r=s.recv(100); res["ignored_param_auth"]=r[:1]; s.close()
s=conn(); s.sendall(struct.pack("!I",100000)+b"x"*8); r=recv_all(s); res["huge_startup"]=sqlstate(r)
s=conn(); s.sendall(b"\x16\x03\x01\x02\x00"+b"x"*100); r=recv_all(s); res["tls_hello"]=sqlstate(r)
print(res)
def login(s):
    s.sendall(startup({"user":"postgres","database":"postgres"}))
    buf=b""
    while not buf.endswith(b"Z\0\0\0\5I"):
        d=s.recv(4096)
        if not d: raise Exception("closed during login: %r"%buf)
        buf+=d
    return buf
res={}
s=conn(); login(s); s.sendall(b"\xff\0\0\0\4"); r=recv_all(s); res["garbage_type"]=sqlstate(r)
s=conn(); login(s); s.sendall(b"Q\0\0\0\2"); r=recv_all(s); res["bad_len_msg"]=sqlstate(r)
s=conn(); login(s); q=b"select 1\0"; s.sendall(b"Q"+struct.pack("!I",len(q)+4)+q+b"Q"); r=s.recv(4096); res["q_then_partial"]=r[-6:]; s.sendall(b"\0\0\0\x0dselect 2\0"); r=s.recv(4096); res["q2"]=r[-6:]; s.close()
s=conn(); login(s); s.sendall(b"Q\0\0\0\x0dselect pg_sleep(0.2)"[:10]); s.close()
s=conn(); login(s); q=b"select 3\0"; s.sendall(b"Q"+struct.pack("!I",len(q)+4)+q); r=s.recv(4096); res["after_abort"]=r[-6:]; s.sendall(b"X\0\0\0\4"); res["terminate"]=recv_all(s); 
print(res)
