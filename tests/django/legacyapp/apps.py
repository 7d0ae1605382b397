"""App config of legacyapp (see __init__.py)."""
from django.apps import AppConfig


class LegacyappConfig(AppConfig):
    name = "legacyapp"
    default_auto_field = "django.db.models.BigAutoField"
