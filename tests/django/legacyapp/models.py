"""Models of legacyapp: the legacy application's tables (spec section 4) as unmanaged models over
the schema tests/fixture creates, plus one managed scratch model for ORM write traffic.

Invariants: unmanaged models declare only columns the fixture has, with the legacy db_table
names, so the ORM's SQL is what the legacy app would send; foreign keys between them use
db_constraint=False (the fixture owns the constraints) and DO_NOTHING. Managers carry the legacy
call sites that live on managers in the legacy repo (BtManager); the service-layer ones are in
legacyapp/legacy.py.
"""
import uuid

from django.contrib.gis.db import models as gis
from django.contrib.postgres.fields import ArrayField
from django.db import models


def _fk(to, **kw):
    kw.setdefault("null", True)
    return models.ForeignKey(to, on_delete=models.DO_NOTHING, db_constraint=False,
                             related_name="+", **kw)


class BaseModel(models.Model):
    cuser_id = models.BigIntegerField(null=True)
    muser_id = models.BigIntegerField(null=True)
    cdtz = models.DateTimeField()
    mdtz = models.DateTimeField()
    ctzoffset = models.IntegerField(default=-1)
    tenant_id = models.BigIntegerField(null=True)

    class Meta:
        abstract = True


class TypeAssist(BaseModel):
    tacode = models.CharField(max_length=50)
    taname = models.CharField(max_length=100)
    tatype = _fk("self")
    bu_id = models.BigIntegerField(null=True)
    client_id = models.BigIntegerField(null=True)
    enable = models.BooleanField(default=True)

    class Meta:
        managed = False
        db_table = "typeassist"


class BtManager(models.Manager):
    """The legacy BtManager call sites (apps/onboarding/managers.py), SQL text as the spec gives."""

    def get_all_bu_of_client(self, clientid, type="array"):
        rtype = "bigint[]" if type == "array" else "jsonb"
        qset = self.raw(f"select fn_get_bulist({clientid}, false, true, '{type}'::text, "
                        f"null::{rtype}) as id;")
        return qset[0].id

    def get_whole_tree(self, clientid):
        qset = self.raw(f"select fn_get_bulist({clientid}, true, true, 'array'::text, "
                        f"null::bigint[]) as id;")
        return qset[0].id

    def load_parent_choices(self, parentid):
        from legacyapp import legacy
        parentid = -1 if parentid in (None, "None") else parentid
        buids = legacy.runrawsql(
            "select fn_get_bulist(%s, true, true, 'array'::text, null::bigint[]) as buids",
            [parentid])
        return buids[0]["buids"]

    def get_bus_based_on_idf(self, clientid):
        from legacyapp import legacy
        buids = legacy.runrawsql(
            "select fn_get_bulist(%s, true, true, 'array'::text, null::bigint[]) as buids",
            [clientid])
        return buids[0]["buids"]


class Bt(BaseModel):
    uuid = models.UUIDField(null=True)
    bucode = models.CharField(max_length=30)
    solid = models.CharField(max_length=30, null=True)
    bupreferences = models.JSONField(null=True)
    identifier = _fk(TypeAssist)
    buname = models.CharField(max_length=200)
    butree = models.CharField(max_length=300, null=True)
    butype = _fk(TypeAssist)
    parent = _fk("self")
    enable = models.BooleanField(default=True)
    siincludes = ArrayField(models.CharField(max_length=50), null=True)
    gpslocation = gis.PointField(geography=True, srid=4326, null=True)

    objects = BtManager()

    class Meta:
        managed = False
        db_table = "bt"


class People(BaseModel):
    peoplecode = models.CharField(max_length=50)
    peoplename = models.CharField(max_length=120)
    isadmin = models.BooleanField(default=False)
    enable = models.BooleanField(default=True)
    people_extras = models.JSONField(default=dict)
    bu = _fk(Bt)
    client = _fk(Bt)

    class Meta:
        managed = False
        db_table = "people"


class Pgroup(BaseModel):
    groupname = models.CharField(max_length=250)
    enable = models.BooleanField(default=True)
    identifier = _fk(TypeAssist)
    bu = _fk(Bt)
    client = _fk(Bt)

    class Meta:
        managed = False
        db_table = "pgroup"


class Pgbelonging(BaseModel):
    pgroup = _fk(Pgroup)
    people = _fk(People)
    isgrouplead = models.BooleanField(default=False)
    assignsites = _fk(Bt)
    bu = _fk(Bt)
    client = _fk(Bt)

    class Meta:
        managed = False
        db_table = "pgbelonging"


class QuestionSet(BaseModel):
    qsetname = models.CharField(max_length=200)
    enable = models.BooleanField(default=True)
    assetincludes = ArrayField(models.CharField(max_length=100), null=True)
    buincludes = ArrayField(models.CharField(max_length=100), null=True)
    seqno = models.SmallIntegerField(default=1)
    parent = _fk("self")
    type = models.CharField(max_length=50, null=True)
    bu = _fk(Bt)
    client = _fk(Bt)

    class Meta:
        managed = False
        db_table = "questionset"


class Asset(BaseModel):
    uuid = models.UUIDField(default=uuid.uuid4)
    assetcode = models.CharField(max_length=50)
    assetname = models.CharField(max_length=250)
    enable = models.BooleanField(default=True)
    iscritical = models.BooleanField(default=False)
    gpslocation = gis.PointField(geography=True, srid=4326, null=True)
    parent = _fk("self")
    identifier = models.CharField(max_length=55)
    runningstatus = models.CharField(max_length=55, null=True)
    client = _fk(Bt)
    bu = _fk(Bt)
    capacity = models.DecimalField(max_digits=18, decimal_places=2, default=0)
    servprov = _fk(Bt)
    asset_json = models.JSONField(null=True)

    class Meta:
        managed = False
        db_table = "asset"


class Jobneed(BaseModel):
    uuid = models.UUIDField(default=uuid.uuid4)
    jobdesc = models.CharField(max_length=200)
    plandatetime = models.DateTimeField(null=True)
    expirydatetime = models.DateTimeField(null=True)
    gracetime = models.IntegerField(default=0)
    receivedonserver = models.DateTimeField()
    gpslocation = gis.PointField(geography=True, srid=4326, null=True)
    remarks = models.TextField(null=True)
    asset = _fk(Asset)
    frequency = models.CharField(max_length=55, null=True)
    jobstatus = models.CharField(max_length=60, null=True)
    jobtype = models.CharField(max_length=50, null=True)
    priority = models.CharField(max_length=50)
    qset = _fk(QuestionSet)
    scantype = models.CharField(max_length=50)
    people = _fk(People)
    pgroup = _fk(Pgroup)
    identifier = models.CharField(max_length=50, null=True)
    parent = _fk("self")
    seqno = models.SmallIntegerField()
    client = _fk(Bt)
    bu = _fk(Bt)
    multifactor = models.DecimalField(max_digits=10, decimal_places=6)
    other_info = models.JSONField()

    class Meta:
        managed = False
        db_table = "jobneed"


class Capability(BaseModel):
    capscode = models.CharField(max_length=50)
    capsname = models.CharField(max_length=1000, null=True)
    parent = _fk("self")
    cfor = models.CharField(max_length=10)
    client = _fk(Bt)
    enable = models.BooleanField(default=True)

    class Meta:
        managed = False
        db_table = "capability"


class ScratchEvent(models.Model):
    """Managed scratch table in each tenant database (migrated through pgshim) for ORM writes."""
    code = models.CharField(max_length=40, unique=True)
    bu = _fk(Bt)
    payload = models.JSONField(default=dict)
    tags = ArrayField(models.CharField(max_length=30), default=list)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    happened = models.DateTimeField()

    class Meta:
        db_table = "legacyapp_scratchevent"
