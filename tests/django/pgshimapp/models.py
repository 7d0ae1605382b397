"""Models of the test app: a parent/child pair with a ForeignKey, a JSONField and an ArrayField,
enough to make migrate and the ORM's common statements go through the proxy. Later issues add
the legacy tables' call sites next to these."""
from django.contrib.postgres.fields import ArrayField
from django.db import models


class Site(models.Model):
    name = models.CharField(max_length=100, unique=True)
    attrs = models.JSONField(default=dict)
    tags = ArrayField(models.CharField(max_length=30), default=list)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class Asset(models.Model):
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="assets")
    code = models.CharField(max_length=50)
    quantity = models.IntegerField(default=0)
    readings = ArrayField(models.IntegerField(), default=list)
    meta = models.JSONField(null=True, blank=True)

    class Meta:
        unique_together = [("site", "code")]

    def __str__(self):
        return self.code
