# The Django application of tests/django, run next to pgshim. Django 3.2 and psycopg2 come from
# Debian packages, as everywhere else in this project.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-django python3-psycopg2 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system app && useradd --system --gid app --create-home app
WORKDIR /app
COPY tests/django /app
USER app
EXPOSE 8000
CMD ["python3", "manage.py", "runserver", "0.0.0.0:8000"]
