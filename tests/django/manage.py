#!/usr/bin/python3
"""Django entry point of pgshim's test project (tests/django), used to drive pgshim like the
legacy application does. Settings come from the environment: see pgshimsite/settings.py."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pgshimsite.settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
