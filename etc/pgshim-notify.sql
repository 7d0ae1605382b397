-- pgshim-notify.sql: tells pgshim about writes that do not go through it (issue 7, guarantee 2).
--
-- Installs, in the current database, a trigger function and one statement-level trigger
-- (AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE) on every legacy table the cached functions
-- read. Each triggering statement runs pg_notify(<channel>, <table name>); PostgreSQL delivers
-- the notification when the transaction commits (never for a rollback) and sends one per channel
-- and payload per transaction, so a bulk write costs one notification per table. pgshim LISTENs
-- on the channel for every tenant database with a function in cache mode and stops serving the
-- results that read the table (bumps its generation in Redis) as soon as it arrives.
--
-- Run it in every tenant database, as the owner of the tables (idempotent: run it again after
-- adding a table or changing the channel):
--     psql -d tenant_a -f etc/pgshim-notify.sql
--     psql -d tenant_a -v channel=my_channel -f etc/pgshim-notify.sql   # [redis] notify_channel
-- Remove with etc/pgshim-notify-uninstall.sql. Tables that do not exist are skipped.
-- The table list is rewrite/rw_writes.h's RW_TABLE_MAP: keep the two in step.

\set ON_ERROR_STOP on
\if :{?channel}
\else
\set channel pgshim_invalidate
\endif

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT set_config('pgshim.notify_channel', :'channel', true) AS pgshim_channel \gset

CREATE OR REPLACE FUNCTION pgshim_notify() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    -- TG_ARGV[0] is the channel; the payload names the table (pgshim bumps every table of the
    -- tenant for a payload it does not know).
    PERFORM pg_notify(TG_ARGV[0], TG_TABLE_NAME);
    RETURN NULL;
END
$fn$;

DO $do$
DECLARE
    tab text;
    chan text := current_setting('pgshim.notify_channel');
BEGIN
    FOREACH tab IN ARRAY ARRAY['bt', 'typeassist', 'asset', 'questionset', 'jobneed',
                               'pgbelonging', 'pgroup', 'capability', 'people'] LOOP
        IF to_regclass(tab) IS NULL THEN
            RAISE WARNING 'pgshim-notify: no table %, skipped', tab;
            CONTINUE;
        END IF;
        EXECUTE format('DROP TRIGGER IF EXISTS pgshim_notify ON %I', tab);
        EXECUTE format('CREATE TRIGGER pgshim_notify'
                       ' AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION pgshim_notify(%L)', tab, chan);
    END LOOP;
END
$do$;

COMMIT;
