"""manage.py legacy_compare: drive ORM traffic and every legacy call site through the tenant
aliases (pgshim in the tests) and compare each call's Python-level output with the same call on
the direct_<tenant> alias (straight to PostgreSQL).

    manage.py legacy_compare [--tenants tenant_a,tenant_b] [--per-site 10] [--seed 1]
                             [--json FILE] [--skip-orm]

For every tenant and call site, `--per-site` argument tuples are drawn from the tenant's data
(plus edge cases: missing ids, the 1/-1 sentinels, ids as quoted strings, legacy rows under -1,
people in no group); each tuple runs through the tenant alias and then at once directly, and the
outputs must be equal: exactly, except where spec section 10 says the legacy order is undefined
(job and asset rows compared as multisets of rows; down-walk arrays and idnf id lists as
multisets). Between calls `close_old_connections()` runs, as at the end of a request, so
CONN_MAX_AGE 0 reconnects per call and CONN_MAX_AGE 60 reuses the connection.

Prints "ok: ..." per step, "MISMATCH ..." per difference, and a last line
"RESULT <json>" with per-site call and mismatch counts; exits 1 on any mismatch or ORM failure.
Writes only rows it can recognise (codes starting with "dj-") and deletes them again.
"""
import datetime
import decimal
import json
import random
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connections, transaction
from django.db.models import Avg, Count, Max, Q, Sum

from legacyapp import legacy
from legacyapp.models import Asset, Bt, Capability, Jobneed, QuestionSet, ScratchEvent
from legacyapp.tenancy import use_tenant

UTC = datetime.timezone.utc

# Call sites whose legacy result order is undefined (spec 10): compared as multisets.
UNORDERED_ROWS = {"get_assetdetails", "get_jobneedmodifiedafter",
                  "get_externaltouremodifiedafter", "get_schedule_for_adhoc",
                  "get_assetdetails_in_atomic"}
UNORDERED_IDS = {"get_all_bu_of_client"}          # down-walk BFS, siblings undefined
UNORDERED_TEXT_IDS = {"fn_getbulist_basedon_idnf"}  # traversal order undefined


def _records_multiset(out):
    rows = json.loads(out["records"])
    return dict(out, records=sorted(json.dumps(r, sort_keys=False) for r in rows))


def normalise(site, out):
    if isinstance(out, Exception):
        return ("error", type(out).__name__, getattr(out, "pgcode", None) or
                getattr(getattr(out, "__cause__", None), "pgcode", None))
    if site in UNORDERED_ROWS:
        return _records_multiset(out)
    if site in UNORDERED_IDS and isinstance(out, list):
        return sorted(out)
    if site in UNORDERED_TEXT_IDS:
        rows = json.loads(out["records"])
        vals = []
        for r in rows:
            v = r.get("fn_getbulist_basedon_idnf")
            vals.append(None if v is None else sorted(v.split(" ")) if v else "")
        return dict(out, records=vals)
    return out


class Command(BaseCommand):
    help = "Compare legacy call sites and ORM results through pgshim vs direct PostgreSQL."

    def add_arguments(self, parser):
        parser.add_argument("--tenants", default=",".join(settings.TENANTS))
        parser.add_argument("--per-site", type=int, default=10)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--json")
        parser.add_argument("--skip-orm", action="store_true")
        parser.add_argument("--settle-ms", type=int, default=0,
                            help="pause after a legacy call that is followed by a write to the "
                                 "table it reads (shadow mode computes the native answer after "
                                 "the client got PostgreSQL's, so an immediate write races it)")

    # ------------------------------------------------------------------ plumbing
    def call(self, alias, fn, args):
        """Runs one call site on alias, as one 'request'. Returns output or the exception."""
        try:
            with use_tenant(alias):
                return fn(*args)
        except Exception as e:  # noqa: BLE001 - errors are part of the compared output
            return e
        finally:
            close_old_connections()

    def compare(self, tenant, site, fn, args, exact_order_note=True):
        for _ in range(3):
            day = datetime.datetime.now(UTC).date()
            got = self.call(tenant, fn, args)
            want = self.call("direct_" + tenant, fn, args)
            if datetime.datetime.now(UTC).date() == day:
                break   # both calls saw the same UTC day (job functions depend on it)
        st = self.stats.setdefault("%s/%s" % (tenant, site), {"calls": 0, "mismatches": 0,
                                                              "rows": 0, "errors": 0})
        st["calls"] += 1
        if isinstance(want, Exception):
            st["errors"] += 1
        elif isinstance(want, dict):
            st["rows"] += want.get("nrows", 0)
        elif isinstance(want, list):
            st["rows"] += len(want)
        if normalise(site, got) != normalise(site, want):
            st["mismatches"] += 1
            self.failures += 1
            self.stdout.write("MISMATCH %s %s args=%r\n  pgshim: %.600r\n  direct: %.600r"
                              % (tenant, site, args, got, want))
        elif got != want and not isinstance(want, Exception):
            st["order_differs"] = st.get("order_differs", 0) + 1
        return got

    # ------------------------------------------------------------------ argument pools
    def pools(self, tenant):
        conn = connections["direct_" + tenant]
        with conn.cursor() as cur:
            def col(sql):
                cur.execute(sql)
                return cur.fetchall()
            p = dict(
                clients=[r[0] for r in col(
                    "select b.id from bt b join typeassist t on t.id = b.identifier_id "
                    "where t.tacode = 'CLIENT' and b.parent_id = 1 order by b.id")],
                bts=[r[0] for r in col("select id from bt order by id")],
                legacy=[r[0] for r in col(
                    "select id from bt where parent_id = -1 or id = -1 order by id")],
                legacy_all=[r[0] for r in col(
                    "select unnest(string_to_array(fn_mendownbt(-1, 'text'::text), ' ')"
                    "::bigint[]) order by 1")],
                sites=[r[0] for r in col(
                    "select distinct bu_id from asset where id > 1 and bu_id is not null order by 1")],
                assets=col("select id, bu_id from asset where id > 1 order by id"),
                qsassets=col("select q.bu_id, a from questionset q, unnest(q.assetincludes) a "
                             "where q.parent_id = 1 order by q.id, a limit 400"),
                people=col("select id, bu_id, client_id from people where id > 1 order by id"),
                jobpeople=col(
                    "(select people_id, bu_id, client_id from jobneed where people_id > 1 and "
                    "plandatetime between now() - interval '2 days' and now() + interval '2 days'"
                    " order by id limit 200) union all (select pb.people_id, jn.bu_id, jn.client_id"
                    " from jobneed jn join pgbelonging pb on pb.pgroup_id = jn.pgroup_id"
                    " where jn.pgroup_id > 1 and jn.plandatetime between now() - interval '2 days'"
                    " and now() + interval '2 days' order by jn.id limit 200)"),
                tourpeople=col(
                    "select coalesce(nullif(people_id, 1), muser_id, cuser_id), bu_id, client_id"
                    " from jobneed where identifier = 'EXTERNALTOUR' order by id limit 200"),
                adhoc=col(
                    "select plandatetime, expirydatetime, bu_id, people_id, asset_id, qset_id "
                    "from jobneed where id > 1 and asset_id > 1 and qset_id > 1 and "
                    "plandatetime is not null and expirydatetime is not null and people_id > 1 "
                    "order by id limit 300"),
                mdtz=col("select bu_id, mdtz from asset where id > 1 and bu_id is not null "
                         "order by id limit 300"),
            )
        close_old_connections()
        return p

    # ------------------------------------------------------------------ legacy call sites
    def legacy_sites(self, tenant, p, n):
        rnd = self.rnd
        clients = p["clients"] or [2]

        def pick(xs, default):
            return rnd.choice(xs) if xs else default

        # BtManager.get_all_bu_of_client / get_whole_tree (inlined f-string SQL, Bt.objects.raw)
        for i in range(n):
            c = [clients[0], 1, -1, 999999][i] if i < 4 else pick(clients + p["legacy"], 2)
            self.compare(tenant, "get_all_bu_of_client", legacy.get_all_bu_of_client, (c,))
            if i < 2:
                self.compare(tenant, "get_all_bu_of_client_jsonb", legacy.get_all_bu_of_client,
                             (c, "jsonb"))
            if i == 0:
                # type='text' makes the caller send null::jsonb with phrase 'text': the legacy
                # function fails (structure of query does not match function result type).
                self.compare(tenant, "get_all_bu_of_client_text_error",
                             legacy.get_all_bu_of_client, (c, "text"))
            self.compare(tenant, "get_whole_tree", legacy.get_whole_tree, (c,))
        # load_parent_choices (GET string or 'None') / get_bus_based_on_idf (runrawsql, %s)
        for i in range(n):
            b = pick(p["bts"] + p["legacy_all"], 2)
            arg = ["None", "5", str(b), b][i % 4]
            self.compare(tenant, "load_parent_choices", legacy.load_parent_choices, (arg,))
            self.compare(tenant, "get_bus_based_on_idf", legacy.get_bus_based_on_idf,
                         (pick(clients, 2) if i % 3 else str(pick(clients, 2)),))
        # fn_getbulist_basedon_idnf
        for i in range(n):
            b = pick(p["legacy_all"], 11) if i % 3 else pick(clients + [None, 999999], 2)
            flags = [(True, True), (True, False), (False, True), (False, False), (None, True)]
            cus, si = flags[i % len(flags)]
            self.compare(tenant, "fn_getbulist_basedon_idnf", legacy.fn_getbulist_basedon_idnf,
                         (b, cus, si))
        # fn_getassetvsquestionset
        for i in range(n):
            site, a = pick(p["qsassets"], (1, "1"))
            if i == 0:
                a = "0" + a
            self.compare(tenant, "fn_getassetvsquestionset", legacy.fn_getassetvsquestionset,
                         (site, a, ["", "name", "NAME", None][i % 4]))
        # get_assetdetails: client sends naive wall time + ctzoffset minutes
        for i in range(n):
            site, mdtz = pick(p["mdtz"], (2, datetime.datetime(2020, 1, 1, tzinfo=UTC)))
            off = [330, 0, -300, -1, 345][i % 5]
            wall = (mdtz.astimezone(datetime.timezone(datetime.timedelta(minutes=off)))
                    + datetime.timedelta(seconds=rnd.choice([-60, 0, 1, 3600])))
            s = wall.strftime("%Y-%m-%d %H:%M:%S")
            if i == 0:
                s, site = "1970-01-01 00:00:00", pick(p["sites"], 2)
            elif i == 1:
                s = s + "+00:00"
            elif i == 2:
                s = "2099-01-01 00:00:00"
            self.compare(tenant, "get_assetdetails", legacy.get_assetdetails, (s, off, site))
        # fun_getjobneed / fun_getexttourjobneed
        for i in range(n):
            pe, bu, cl = pick(p["jobpeople"], (1, 1, 1))
            if i == 0:
                pe = 999999
            elif i == 1:
                pe = str(pe)      # a GET string: rendered '5', coerced to bigint
            self.compare(tenant, "get_jobneedmodifiedafter", legacy.get_jobneedmodifiedafter,
                         (pe, bu, cl))
            pe, bu, cl = pick(p["tourpeople"], (1, 1, 1))
            self.compare(tenant, "get_externaltouremodifiedafter",
                         legacy.get_externaltouremodifiedafter, (pe, bu, cl))
        # fn_get_schedule_for_adhoc
        for i in range(min(n, len(p["adhoc"]))):
            plan, exp, bu, pe, asset, qset = rnd.choice(p["adhoc"])
            at = plan + (exp - plan) * rnd.random()
            self.compare(tenant, "get_schedule_for_adhoc", legacy.get_schedule_for_adhoc,
                         (at.replace(microsecond=0), bu, pe, asset, qset))
        # Capability.objects.raw(get_web_caps_for_client)
        for i in range(max(2, n // 4)):
            self.compare(tenant, "get_web_caps_for_client", legacy.get_web_caps_for_client, ())

        # A legacy call inside a transaction block (must be passed through, same answer).
        def in_atomic(mdtz, off, site):
            with transaction.atomic(using=legacy.get_current_db_name()):
                return legacy.get_assetdetails(mdtz, off, site)
        self.compare(tenant, "get_assetdetails_in_atomic", in_atomic,
                     ("1970-01-01 00:00:00", 0, pick(p["sites"], 2)))
        self.stdout.write("ok: legacy call sites %s" % tenant)

    # ------------------------------------------------------------------ ORM traffic
    def orm_reads(self, tenant, p):
        """Read-only ORM queries, compared between the tenant alias and the direct alias."""
        site = p["sites"][0] if p["sites"] else 2
        queries = {
            "asset_count_by_identifier": lambda: sorted(
                Asset.objects.values_list("identifier").annotate(n=Count("id"))),
            "asset_aggregates": lambda: Asset.objects.filter(bu_id=site).aggregate(
                n=Count("id"), cap=Sum("capacity"), avg=Avg("capacity"), last=Max("mdtz")),
            "asset_json_haskey": lambda: Asset.objects.filter(
                asset_json__has_key="model").count(),
            "jobneed_json_lookup": lambda: Jobneed.objects.filter(
                other_info__istimebound=False).count(),
            "jobneed_json_keytext": lambda: sorted(Jobneed.objects.filter(
                other_info__isdynamic=False, identifier="TASK").values_list("id", flat=True)[:50]),
            "qset_array_contains": lambda: sorted(QuestionSet.objects.filter(
                assetincludes__contains=[p["qsassets"][0][1]] if p["qsassets"] else ["2"])
                .values_list("id", flat=True)),
            "qset_array_len": lambda: QuestionSet.objects.filter(assetincludes__len__gt=20).count(),
            "bt_children_join": lambda: sorted(Bt.objects.filter(parent__bucode__startswith="CL")
                                               .values_list("id", "parent__bucode")),
            "caps_by_cfor": lambda: sorted(Capability.objects.values_list("cfor")
                                           .annotate(n=Count("id"))),
            "jobneed_q_objects": lambda: Jobneed.objects.filter(
                Q(identifier="TASK") | Q(identifier="PPM"), bu_id=site).count(),
            "asset_instances": lambda: [(a.id, a.assetcode, a.capacity, a.mdtz,
                                         a.gpslocation.wkt if a.gpslocation else None)
                                        for a in Asset.objects.filter(bu_id=site).order_by("id")[:20]],
        }
        for name, q in queries.items():
            self.compare(tenant, "orm:" + name, q, ())
        self.stdout.write("ok: ORM reads %s" % tenant)

    def expect(self, cond, what):
        if not cond:
            self.failures += 1
            self.stdout.write("ORM FAILURE %s" % what)

    def orm_writes(self, tenant, p):
        """CRUD, bulk_create, atomic, select_for_update through the tenant alias; verified on the
        direct alias, and legacy calls after the writes compared again (read-your-writes)."""
        direct = "direct_" + tenant
        site = p["sites"][0] if p["sites"] else 2
        now = datetime.datetime.now(UTC).replace(microsecond=0)
        with use_tenant(tenant):
            ScratchEvent.objects.filter(code__startswith="dj-").delete()
            Asset.objects.filter(assetcode__startswith="dj-").delete()
            e = ScratchEvent.objects.create(code="dj-1", bu_id=site, happened=now,
                                            payload={"k": 1, "tags": ["x"]}, tags=["a", "b"],
                                            amount=decimal.Decimal("12.50"))
            self.expect(e.pk is not None and ScratchEvent.objects.get(pk=e.pk).code == "dj-1",
                        "create returned a primary key (INSERT ... RETURNING)")
            ScratchEvent.objects.bulk_create([
                ScratchEvent(code="dj-b%03d" % i, bu_id=site, happened=now, amount=i,
                             payload={"i": i, "even": i % 2 == 0}, tags=["t%d" % (i % 3)])
                for i in range(40)])
            self.expect(ScratchEvent.objects.filter(code__startswith="dj-").count() == 41, "bulk")
            self.expect(ScratchEvent.objects.filter(payload__even=True).count() == 20, "json key")
            self.expect(ScratchEvent.objects.filter(tags__contains=["t1"]).count() == 13, "array")
            agg = ScratchEvent.objects.filter(code__startswith="dj-b").aggregate(s=Sum("amount"))
            self.expect(agg["s"] == sum(range(40)), "aggregate %r" % agg)
            n = ScratchEvent.objects.filter(code__startswith="dj-b", amount__gte=30).update(
                amount=0)
            self.expect(n == 10, "update rowcount %r" % n)
            ScratchEvent.objects.filter(code="dj-b000").delete()
            try:
                with transaction.atomic(using=tenant):
                    ScratchEvent.objects.create(code="dj-rollback", happened=now)
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass
            with transaction.atomic(using=tenant):
                ScratchEvent.objects.create(code="dj-commit", happened=now)
        with use_tenant(direct):
            self.expect(ScratchEvent.objects.filter(code__startswith="dj-").count() == 41,
                       "direct sees the writes")
            self.expect(not ScratchEvent.objects.filter(code="dj-rollback").exists(),
                       "rollback not visible")
            got = ScratchEvent.objects.get(code="dj-1")
            self.expect(got.payload == {"k": 1, "tags": ["x"]} and got.tags == ["a", "b"] and
                       got.amount == decimal.Decimal("12.50"), "direct round trip")
        close_old_connections()

        # select_for_update: a second connection through the tenant alias blocks until commit
        order = []

        def other():
            conn = connections.create_connection(tenant)
            try:
                with conn.cursor() as cur:
                    cur.execute("begin")
                    cur.execute("select amount from legacyapp_scratchevent where code = %s "
                                "for update", ["dj-1"])
                    order.append(("other", cur.fetchone()[0]))
                    cur.execute("commit")
            finally:
                conn.close()

        with use_tenant(tenant):
            with transaction.atomic(using=tenant):
                row = ScratchEvent.objects.select_for_update().get(code="dj-1")
                th = threading.Thread(target=other)
                th.start()
                th.join(timeout=1.0)
                self.expect(th.is_alive(), "select_for_update did not block the second locker")
                row.amount = decimal.Decimal("77.00")
                row.save()
                order.append(("main", None))
            th.join(timeout=20)
            self.expect(order == [("main", None), ("other", decimal.Decimal("77.00"))],
                       "lock order %r" % order)
        close_old_connections()

        # Write a legacy table through the ORM, then the legacy calls must see it (both ways).
        with use_tenant(tenant):
            a = Asset.objects.create(assetcode="dj-asset", assetname="django asset", bu_id=site,
                                     client_id=p["clients"][0] if p["clients"] else 2,
                                     identifier="ASSET", capacity=decimal.Decimal("3.10"),
                                     cdtz=now, mdtz=now, ctzoffset=330)
        close_old_connections()
        since = (now - datetime.timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
        out = self.compare(tenant, "get_assetdetails_after_write", legacy.get_assetdetails,
                           (since, 0, site))
        self.expect(isinstance(out, dict) and '"dj-asset"' in out["records"],
                   "asset written through the ORM missing from fn_getassetdetails")
        time.sleep(self.settle)
        with use_tenant(tenant):
            Asset.objects.filter(pk=a.pk).update(enable=False, mdtz=now)
        close_old_connections()
        out = self.compare(tenant, "get_assetdetails_after_write", legacy.get_assetdetails,
                           (since, 0, site))
        self.expect(isinstance(out, dict) and '"dj-asset"' not in out["records"],
                   "disabled asset still returned by fn_getassetdetails")
        time.sleep(self.settle)
        with use_tenant(tenant):
            Asset.objects.filter(pk=a.pk).delete()
            ScratchEvent.objects.filter(code__startswith="dj-").delete()
        close_old_connections()
        self.stdout.write("ok: ORM writes %s" % tenant)

    # ------------------------------------------------------------------ main
    def handle(self, *args, **opts):
        self.rnd = random.Random(opts["seed"])
        self.stats = {}
        self.failures = 0
        self.settle = opts["settle_ms"] / 1000.0
        t0 = time.time()
        tenants = [t for t in opts["tenants"].split(",") if t]
        for t in tenants:
            if "direct_" + t not in connections.databases:
                raise CommandError("no alias direct_%s: set PGSHIM_DJANGO_DIRECT_PORT" % t)
        for t in tenants:
            p = self.pools(t)
            if not opts["skip_orm"]:
                self.orm_reads(t, p)
                self.orm_writes(t, p)
            self.legacy_sites(t, p, opts["per_site"])
        result = dict(failures=self.failures, seconds=round(time.time() - t0, 1),
                      sites=self.stats)
        if opts["json"]:
            with open(opts["json"], "w") as f:
                json.dump(result, f, indent=1)
        self.stdout.write("RESULT " + json.dumps(result, sort_keys=True))
        if self.failures:
            raise CommandError("%d mismatches or ORM failures" % self.failures)
