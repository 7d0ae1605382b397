# Developer smoke check: session parameters follow each client across a small transaction pool.
# Usage: params.py PORT  (needs transaction mode, a pool smaller than 12)
# parameter tracking across clients on a small transaction pool
import psycopg2, sys
port=int(sys.argv[1])
dsn = f"host=127.0.0.1 port={port} user=postgres password=postgres dbname=postgres"
cs=[psycopg2.connect(dsn, application_name=f"app{i}") for i in range(12)]
for i,c in enumerate(cs):
    c.autocommit=True
    cur=c.cursor()
    if i%2==0: cur.execute(f"set timezone to 'Etc/GMT+{i}'")
    if i%3==0: cur.execute("set datestyle to 'SQL, DMY'")
ok=True
for rnd in range(3):
    for i,c in enumerate(cs):
        cur=c.cursor()
        cur.execute("select current_setting('timezone'), current_setting('datestyle'), current_setting('application_name')")
        tz,ds,app=cur.fetchone()
        exp_tz = f"Etc/GMT+{i}" if i%2==0 else "UTC"
        exp_ds = "SQL, DMY" if i%3==0 else "ISO, MDY"
        if (tz,ds,app)!=(exp_tz,exp_ds,f"app{i}"):
            ok=False; print("MISMATCH", i, tz, ds, app)
print("params ok" if ok else "params FAIL")
