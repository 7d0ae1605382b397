"""Settings of pgshim's Django test project.

The database connection comes entirely from the environment so the same project runs against
PostgreSQL directly, PgBouncer or pgshim:
  PGSHIM_DJANGO_HOST (127.0.0.1), PGSHIM_DJANGO_PORT (5432), PGSHIM_DJANGO_DB (pgshim_django),
  PGSHIM_DJANGO_USER (postgres), PGSHIM_DJANGO_PASSWORD (''), PGSHIM_DJANGO_CONN_MAX_AGE (0).
Server-side cursors are disabled because a transaction-mode pooler cannot keep a named cursor
across transactions (Django's documented setting for PgBouncer).

The legacy-shaped app (legacyapp) adds tenant databases, routed like the legacy application by a
thread-local database router (legacyapp/tenancy.py), with the PostGIS engine as the legacy repo uses:
  PGSHIM_DJANGO_TENANTS (tenant_a,tenant_b): alias = database name of each tenant;
  PGSHIM_DJANGO_TENANT_HOST / _PORT (default: PGSHIM_DJANGO_HOST / _PORT): where tenants are reached
  (pgshim in the tests);
  PGSHIM_DJANGO_DIRECT_HOST / _PORT / _PASSWORD: when set, every tenant also gets an alias
  direct_<tenant> straight to PostgreSQL, used to compare each call site's output.
"""
import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "pgshim-test-project-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.postgres",
    "pgshimapp",
    "legacyapp",
]
MIDDLEWARE = []
ROOT_URLCONF = "pgshimsite.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGSHIM_DJANGO_HOST", "127.0.0.1"),
        "PORT": os.environ.get("PGSHIM_DJANGO_PORT", "5432"),
        "NAME": os.environ.get("PGSHIM_DJANGO_DB", "pgshim_django"),
        "USER": os.environ.get("PGSHIM_DJANGO_USER", "postgres"),
        "PASSWORD": os.environ.get("PGSHIM_DJANGO_PASSWORD", ""),
        "CONN_MAX_AGE": int(os.environ.get("PGSHIM_DJANGO_CONN_MAX_AGE", "0")),
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": {"connect_timeout": 10},
    }
}


def _tenant_db(name, host, port, password):
    return {
        "ENGINE": "django.contrib.gis.db.backends.postgis",
        "HOST": host,
        "PORT": port,
        "NAME": name,
        "USER": os.environ.get("PGSHIM_DJANGO_USER", "postgres"),
        "PASSWORD": password,
        "CONN_MAX_AGE": int(os.environ.get("PGSHIM_DJANGO_CONN_MAX_AGE", "0")),
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": {"connect_timeout": 10},
        "TEST": {"MIRROR": None},
    }


TENANTS = [t for t in os.environ.get("PGSHIM_DJANGO_TENANTS", "tenant_a,tenant_b").split(",") if t]
for _t in TENANTS:
    DATABASES[_t] = _tenant_db(
        _t, os.environ.get("PGSHIM_DJANGO_TENANT_HOST", DATABASES["default"]["HOST"]),
        os.environ.get("PGSHIM_DJANGO_TENANT_PORT", DATABASES["default"]["PORT"]),
        DATABASES["default"]["PASSWORD"])
    if os.environ.get("PGSHIM_DJANGO_DIRECT_PORT"):
        DATABASES["direct_" + _t] = _tenant_db(
            _t, os.environ.get("PGSHIM_DJANGO_DIRECT_HOST", "127.0.0.1"),
            os.environ["PGSHIM_DJANGO_DIRECT_PORT"],
            os.environ.get("PGSHIM_DJANGO_DIRECT_PASSWORD", DATABASES["default"]["PASSWORD"]))
DATABASE_ROUTERS = ["legacyapp.tenancy.TenantDbRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
