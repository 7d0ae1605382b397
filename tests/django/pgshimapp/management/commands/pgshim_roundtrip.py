"""manage.py pgshim_roundtrip: CRUD, atomic() commit and rollback, select_for_update and a few
ORM query shapes, run through whatever DATABASES['default'] points at (pgshim in the tests).

Exits non-zero (CommandError) on the first wrong answer; prints one "ok: <step>" line per step so
a failing run shows how far it got. Safe to run repeatedly: it deletes what it creates.
"""
import threading

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import Count, F, Q, Sum

from pgshimapp.models import Asset, Site


def check(cond, what):
    if not cond:
        raise CommandError("check failed: %s" % what)


class Command(BaseCommand):
    help = "Round trip of ORM operations through the configured database (for pgshim's tests)."

    def step(self, name):
        self.stdout.write("ok: %s" % name)

    def handle(self, *args, **options):
        Site.objects.filter(name__startswith="rt-").delete()

        # create / read
        s = Site.objects.create(name="rt-alpha", attrs={"tz": 330, "zones": ["a", "b"]},
                                tags=["north", "big"])
        for i in range(20):
            Asset.objects.create(site=s, code="A%03d" % i, quantity=i, readings=[i, i * 2],
                                 meta={"i": i, "even": i % 2 == 0})
        Asset.objects.bulk_create([Asset(site=s, code="B%03d" % i, quantity=100 + i)
                                   for i in range(50)])
        check(Asset.objects.filter(site=s).count() == 70, "count after create")
        got = Site.objects.get(pk=s.pk)
        check(got.attrs == {"tz": 330, "zones": ["a", "b"]}, "JSONField round trip")
        check(got.tags == ["north", "big"], "ArrayField round trip")
        self.step("create/read")

        # queries: JSON lookups, array lookups, joins, aggregates, parameters of many types
        check(Asset.objects.filter(meta__even=True).count() == 10, "JSON key lookup")
        check(Asset.objects.filter(readings__contains=[4]).count() == 2, "array contains")
        check(Site.objects.filter(tags__overlap=["big"]).count() == 1, "array overlap")
        agg = Asset.objects.filter(site__name="rt-alpha").aggregate(total=Sum("quantity"))
        check(agg["total"] == sum(range(20)) + sum(100 + i for i in range(50)), "aggregate")
        per_site = list(Site.objects.filter(name__startswith="rt-")
                        .annotate(n=Count("assets")).values_list("name", "n"))
        check(per_site == [("rt-alpha", 70)], "annotate join %r" % per_site)
        check(Asset.objects.filter(Q(code__startswith="A") & Q(quantity__gte=10)).count() == 10,
              "Q objects")
        check(len(list(Asset.objects.filter(site=s).iterator())) == 70,
              "iterator without server-side cursor")
        self.step("queries")

        # update / delete
        n = Asset.objects.filter(code__startswith="B").update(quantity=F("quantity") + 1)
        check(n == 50, "update rowcount")
        Asset.objects.filter(code="A000").delete()
        check(Asset.objects.filter(site=s).count() == 69, "delete")
        self.step("update/delete")

        # atomic commit
        with transaction.atomic():
            t = Site.objects.create(name="rt-beta", attrs={}, tags=[])
            Asset.objects.create(site=t, code="X1")
        check(Site.objects.filter(name="rt-beta").exists(), "atomic commit")
        self.step("atomic commit")

        # atomic rollback by exception
        try:
            with transaction.atomic():
                Site.objects.create(name="rt-gamma", attrs={}, tags=[])
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        check(not Site.objects.filter(name="rt-gamma").exists(), "atomic rollback")
        # IntegrityError inside a nested atomic (savepoint) keeps the outer transaction
        with transaction.atomic():
            Site.objects.create(name="rt-delta", attrs={}, tags=[])
            try:
                with transaction.atomic():
                    Asset.objects.create(site=t, code="X1")   # unique_together violation
            except IntegrityError:
                pass
        check(Site.objects.filter(name="rt-delta").exists(), "savepoint rollback keeps outer")
        check(Asset.objects.filter(site=t).count() == 1, "savepoint rolled back the duplicate")
        self.step("atomic rollback")

        # select_for_update: a second connection blocks until the first commits
        order = []

        def other():
            conn = connections.create_connection("default")
            try:
                with conn.cursor() as cur:
                    cur.execute("begin")
                    cur.execute("select quantity from pgshimapp_asset where site_id = %s and "
                                "code = %s for update", [t.pk, "X1"])
                    order.append(("other-locked", cur.fetchone()[0]))
                    cur.execute("commit")
            finally:
                conn.close()

        with transaction.atomic():
            a = Asset.objects.select_for_update().get(site=t, code="X1")
            th = threading.Thread(target=other)
            th.start()
            th.join(timeout=1.0)
            check(th.is_alive(), "second locker was not blocked by select_for_update")
            a.quantity = 777
            a.save()
            order.append(("main-commit", None))
        th.join(timeout=20)
        check(not th.is_alive(), "second locker never got the lock")
        check(order == [("main-commit", None), ("other-locked", 777)], "lock order %r" % order)
        self.step("select_for_update")

        # raw SQL and the connection's own state
        with connection.cursor() as cur:
            cur.execute("select current_setting('TimeZone'), %s::int + 1", [41])
            tz, v = cur.fetchone()
        check(v == 42, "raw cursor")
        check(tz == "UTC", "Django sets TimeZone UTC (got %r)" % tz)
        self.step("raw SQL")

        Site.objects.filter(name__startswith="rt-").delete()
        check(not Asset.objects.filter(site__name__startswith="rt-").exists(), "cascade delete")
        self.step("cleanup")
        self.stdout.write("roundtrip passed")
