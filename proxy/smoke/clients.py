# Developer smoke check (not the formal suite): psycopg2 queries, COPY in/out, errors, cancel,
# NOTICE, SET; LISTEN/NOTIFY when the second argument is "session". Usage: clients.py PORT [session]
import psycopg2, sys, time, threading, io
port = int(sys.argv[1])
dsn = f"host=127.0.0.1 port={port} user=postgres password=postgres dbname=postgres"
c = psycopg2.connect(dsn)
cur = c.cursor()
cur.execute("select %s::int + 1, %s", (41, "x'y"))
print("q", cur.fetchone())
cur.execute("create temp table if not exists t(a int, b text)") if False else None
cur.execute("drop table if exists pxt; create table pxt(a int, b text)")
c.commit()
buf = io.StringIO("".join(f"{i}\tv{i}\n" for i in range(10000)))
cur.copy_from(buf, "pxt")
c.commit()
out = io.StringIO()
cur.copy_expert("copy pxt to stdout", out)
print("copy rows", len(out.getvalue().splitlines()))
try:
    cur.execute("select 1/0")
except Exception as e:
    print("err", e.pgcode)
c.rollback()
cur.execute("select count(*) from pxt"); print("count", cur.fetchone())
# cancel
def canc():
    time.sleep(0.5); c.cancel()
threading.Thread(target=canc).start()
t=time.time()
try:
    cur.execute("select pg_sleep(30)")
except Exception as e:
    print("cancel", e.pgcode, round(time.time()-t,2))
c.rollback()
# notice
cur.execute("do $$ begin raise notice 'hello %', 1; end $$")
print("notices", c.notices)
c.rollback(); c.autocommit=True
cur.execute("set timezone to 'Asia/Kolkata'"); cur.execute("show timezone"); print("tz", cur.fetchone())
c.close()
# listen/notify (session mode only)
if len(sys.argv) > 2 and sys.argv[2] == "session":
    import select
    l = psycopg2.connect(dsn); l.autocommit=True
    lc = l.cursor(); lc.execute("listen chan")
    n = psycopg2.connect(dsn); n.autocommit=True
    n.cursor().execute("notify chan, 'payload'")
    select.select([l],[],[],5); l.poll()
    print("notify", [(x.channel, x.payload) for x in l.notifies])
