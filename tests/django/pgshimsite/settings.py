"""Settings of pgshim's Django test project.

The database connection comes entirely from the environment so the same project runs against
PostgreSQL directly, PgBouncer or pgshim:
  PGSHIM_DJANGO_HOST (127.0.0.1), PGSHIM_DJANGO_PORT (5432), PGSHIM_DJANGO_DB (pgshim_django),
  PGSHIM_DJANGO_USER (postgres), PGSHIM_DJANGO_PASSWORD (''), PGSHIM_DJANGO_CONN_MAX_AGE (0).
Server-side cursors are disabled because a transaction-mode pooler cannot keep a named cursor
across transactions (Django's documented setting for PgBouncer).
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
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
