-- pgshim-notify-uninstall.sql: removes what etc/pgshim-notify.sql installed from the current
-- database (idempotent):
--     psql -d tenant_a -f etc/pgshim-notify-uninstall.sql
--     psql -d tenant_a -v channel=my_channel -f etc/pgshim-notify-uninstall.sql
-- Afterwards writes that bypass pgshim are no longer seen by its cache: their staleness is
-- bounded by the TTL again.

\set ON_ERROR_STOP on
\if :{?channel}
\else
\set channel pgshim_invalidate
\endif
BEGIN;
SET LOCAL client_min_messages = warning;

DO $do$
DECLARE
    tab text;
BEGIN
    FOREACH tab IN ARRAY ARRAY['bt', 'typeassist', 'asset', 'questionset', 'jobneed',
                               'pgbelonging', 'pgroup', 'capability', 'people'] LOOP
        IF to_regclass(tab) IS NOT NULL THEN
            EXECUTE format('DROP TRIGGER IF EXISTS pgshim_notify ON %I', tab);
            EXECUTE format('DROP TRIGGER IF EXISTS pgshim_notify_ins ON %I', tab);
            EXECUTE format('DROP TRIGGER IF EXISTS pgshim_notify_upd ON %I', tab);
            EXECUTE format('DROP TRIGGER IF EXISTS pgshim_notify_del ON %I', tab);
            EXECUTE format('DROP TRIGGER IF EXISTS pgshim_notify_trunc ON %I', tab);
        END IF;
    END LOOP;
END
$do$;

DROP FUNCTION IF EXISTS pgshim_notify();
DROP FUNCTION IF EXISTS pgshim_notify_rows();
-- Dropped in the same transaction as the triggers: pgshim's next sync sees it gone and goes
-- back to invalidating its own writes by table.
DROP FUNCTION IF EXISTS pgshim_notify_version();
-- pgshim invalidates every table on this payload and asks whether the triggers are there at its
-- next sync.
SELECT pg_notify(:'channel', 'pgshim-notify uninstalled') AS pgshim_uninstalled \gset

COMMIT;
