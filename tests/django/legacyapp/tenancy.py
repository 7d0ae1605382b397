"""Tenant routing like the legacy application's: a thread-local "current database" that a
middleware sets per request (here: the caller), read by the database router and by the raw-SQL
helpers (utils.get_current_db_name()).

Invariants: legacyapp models always go to the current tenant alias (reads and writes); other apps
use 'default'. Migrations of legacyapp run only on tenant aliases named in settings.TENANTS (never
on the direct_* comparison aliases, which reach the same databases), other apps only on 'default'.
"""
import threading

from django.conf import settings

_local = threading.local()


def set_db_for_router(alias):
    """Makes `alias` the current tenant database of this thread (None: back to 'default')."""
    _local.db = alias


def get_current_db_name():
    return getattr(_local, "db", None) or "default"


class use_tenant:
    """Context manager: run a block with `alias` as the current tenant database."""

    def __init__(self, alias):
        self.alias = alias

    def __enter__(self):
        self.prev = getattr(_local, "db", None)
        set_db_for_router(self.alias)
        return self.alias

    def __exit__(self, *exc):
        set_db_for_router(self.prev)
        return False


class TenantDbRouter:
    def db_for_read(self, model, **hints):
        if model._meta.app_label == "legacyapp":
            return get_current_db_name()
        return None

    db_for_write = db_for_read

    def allow_relation(self, obj1, obj2, **hints):
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label == "legacyapp":
            return db in getattr(settings, "TENANTS", [])
        return db == "default"
