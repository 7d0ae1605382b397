"""pgshimapp: the Django app whose models and commands exercise pgshim like the legacy app."""
from django.apps import AppConfig


class PgshimappConfig(AppConfig):
    name = "pgshimapp"
    default_auto_field = "django.db.models.BigAutoField"
