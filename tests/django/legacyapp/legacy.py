"""The legacy application's service-layer call sites (spec section 3 "Callers (exact SQL)" and
section 1.8 "How callers turn rows into output"), with the same SQL text and the same Python-side
shaping, all on the current tenant database (legacyapp.tenancy).

Invariants: SQL strings here are byte-for-byte the ones the spec lists (placeholders rendered by
psycopg2 client-side, like the legacy app's driver under Django 3.2); every function returns what
the legacy caller would hand upward (GraphQL SelectOutputType fields as a dict, a list of ids,
model instances turned into tuples), so callers can compare outputs across databases.
"""
import json
import os
from datetime import datetime, timedelta, timezone

from django.db import connections

from legacyapp.models import Bt, Capability
from legacyapp.tenancy import get_current_db_name

CAPS_QUERY_PATH = os.environ.get(
    "PGSHIM_DJANGO_CAPS_SQL",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixture",
                 "caps_query.sql"))


def get_query(name):
    """apps/core/raw_queries.py get_query: only the capability hierarchy query is needed."""
    assert name == "get_web_caps_for_client", name
    with open(CAPS_QUERY_PATH) as f:
        return f.read()


# ---- helpers of apps/core/utils.py and apps/service/querys.py -------------------------------

def runrawsql(sql, args=None, db=None):
    """utils.runrawsql: list of dicts keyed by column name."""
    cursor = connections[db or get_current_db_name()].cursor()
    try:
        cursor.execute(sql, args)
        columns = [col[0] for col in cursor.description]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]
    finally:
        cursor.close()


def get_db_rows(sql, args=None):
    """querys.get_db_rows: rows as JSON text (default=str) plus count and message."""
    cursor = connections[get_current_db_name()].cursor()
    try:
        cursor.execute(sql, args)
        columns = [col[0] for col in cursor.description]
        data = [dict(zip(columns, row)) for row in cursor.fetchall()]
    finally:
        cursor.close()
    data_json = json.dumps(data, default=str)
    count = len(data)
    return dict(records=data_json, nrows=count, msg=f"Total {count} records fetched successfully!")


def getawaredatetime(dt, offset):
    """utils.getawaredatetime: naive 'YYYY-MM-DD HH:MM:SS' (a '+00:00' suffix ignored) taken as
    wall time at UTC+offset minutes."""
    tz = timezone(timedelta(minutes=int(offset)))
    dt = dt.replace("+00:00", "")
    return datetime.strptime(dt, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz, microsecond=0)


# ---- service-layer call sites --------------------------------------------------------------

def get_assetdetails(mdtz, ctzoffset, buid):
    mdtzinput = getawaredatetime(mdtz, ctzoffset)
    return get_db_rows("select * from fn_getassetdetails(%s, %s)", [mdtzinput, buid])


def get_jobneedmodifiedafter(peopleid, siteid, clientid):
    return get_db_rows("select * from fun_getjobneed(%s, %s, %s)", [peopleid, siteid, clientid])


def get_externaltouremodifiedafter(peopleid, siteid, clientid):
    return get_db_rows("select * from fun_getexttourjobneed(%s, %s, %s)",
                       [peopleid, siteid, clientid])


def fn_getassetvsquestionset(siteid, assetid_text, type_):
    """As the ORM-migration scripts call it (the only Python callers)."""
    return get_db_rows("SELECT fn_getassetvsquestionset(%s, %s, %s)", [siteid, assetid_text, type_])


def fn_getbulist_basedon_idnf(buid, cus, si):
    return get_db_rows("SELECT fn_getbulist_basedon_idnf(%s, %s, %s)", [buid, cus, si])


def get_schedule_for_adhoc(plandatetime, buid, peopleid, assetid, qsetid):
    """Dead in the legacy app (wrong name / no args); kept with the function's real name."""
    return get_db_rows("select * from fn_get_schedule_for_adhoc(%s, %s, %s, %s, %s)",
                       [plandatetime, buid, peopleid, assetid, qsetid])


def get_web_caps_for_client():
    """Capability.objects.raw(get_query('get_web_caps_for_client')) as the consumers walk it."""
    return [(c.id, c.capsname, c.capscode, c.parent_id, c.cfor, c.depth, c.path, c.xpath)
            for c in Capability.objects.raw(get_query("get_web_caps_for_client"))]


def get_all_bu_of_client(clientid, type="array"):
    return Bt.objects.get_all_bu_of_client(clientid, type)


def get_whole_tree(clientid):
    return Bt.objects.get_whole_tree(clientid)


def load_parent_choices(parentid):
    return Bt.objects.load_parent_choices(parentid)


def get_bus_based_on_idf(clientid):
    return Bt.objects.get_bus_based_on_idf(clientid)
