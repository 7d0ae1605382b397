-- pgshim-notify.sql: tells pgshim about writes to the legacy tables (issue 7, guarantees 1 and 2).
--
-- Installs, in the current database, trigger functions and statement-level triggers on every
-- legacy table the cached functions read. PostgreSQL delivers a notification when the writing
-- transaction commits (never for a rollback), once per channel and payload per transaction, in
-- commit order. pgshim LISTENs on the channel for every tenant database with a function in cache
-- mode and stops serving the results a notification names (bumps generations in Redis) as soon
-- as it arrives.
--
-- Version 2 (pgshim_notify_version() = 2): scoped payloads. On the tables whose rows belong to a
-- site, a client or a person, three triggers with transition tables report the distinct scope
-- values among the changed rows (for an UPDATE both the old and the new values, so a row moved
-- from one site to another invalidates both):
--     jobneed bu=<bu_id,...> client=<client_id,...>     asset bu=<bu_id,...>
--     questionset bu=<bu_id,...>                        pgbelonging people=<people_id,...>
-- and pgshim invalidates only the cached results of those scopes (plus those with no scope on
-- that table). NULL scope values are left out: every scoped function filters the column by
-- equality with an argument, so such a row is in no scoped result. A statement changing no row
-- sends nothing. More than 50 distinct values of a column, or a payload over 7000 bytes, sends
-- the bare table name, which invalidates every result of the table; so do TRUNCATE and every
-- write to the other tables. Every trigger is ENABLE ALWAYS, so session_replication_role =
-- replica does not silence it. pgshim also relies on these triggers for the writes that go
-- through it (a "sync" round trip on its LISTEN connection instead of a table-level bump), after
-- checking that pgshim_notify_version() exists and every pgshim trigger is enabled ALWAYS and
-- sends on its channel.
--
-- Run it in every tenant database, as the owner of the tables (idempotent: run it again after
-- adding a table or changing the channel):
--     psql -d tenant_a -f etc/pgshim-notify.sql
--     psql -d tenant_a -v channel=my_channel -f etc/pgshim-notify.sql   # [redis] notify_channel
-- Remove with etc/pgshim-notify-uninstall.sql. Tables that do not exist are skipped.
-- The table list is rewrite/rw_writes.h's RW_TABLE_MAP, the scope columns its RW_TABLES_SCOPED
-- and rw_fn_scopes: keep them in step.

\set ON_ERROR_STOP on
\if :{?channel}
\else
\set channel pgshim_invalidate
\endif

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT set_config('pgshim.notify_channel', :'channel', true) AS pgshim_channel \gset

CREATE OR REPLACE FUNCTION pgshim_notify_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $fn$ SELECT 2 $fn$;

-- Table-level: TG_ARGV[0] is the channel; the payload names the table (pgshim bumps every table
-- of the tenant for a payload it does not know).
CREATE OR REPLACE FUNCTION pgshim_notify() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], TG_TABLE_NAME);
    RETURN NULL;
END
$fn$;

-- Scoped: TG_ARGV[0] is the channel, TG_ARGV[1..] are '<scope>=<column>' pairs. The transition
-- tables are named pgshim_old / pgshim_new by the triggers below.
CREATE OR REPLACE FUNCTION pgshim_notify_rows() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    payload text := TG_TABLE_NAME;
    col text;
    src text;
    n bigint;
    vals text;
    changed boolean;
BEGIN
    EXECUTE CASE TG_OP WHEN 'DELETE' THEN 'SELECT EXISTS (SELECT 1 FROM pgshim_old)'
                       ELSE 'SELECT EXISTS (SELECT 1 FROM pgshim_new)' END INTO changed;
    IF NOT changed THEN
        RETURN NULL;
    END IF;
    FOR i IN 1 .. TG_NARGS - 1 LOOP
        col := split_part(TG_ARGV[i], '=', 2);
        src := CASE TG_OP
            WHEN 'INSERT' THEN format('SELECT %I AS v FROM pgshim_new', col)
            WHEN 'DELETE' THEN format('SELECT %I AS v FROM pgshim_old', col)
            ELSE format('SELECT %1$I AS v FROM pgshim_old UNION ALL SELECT %1$I FROM pgshim_new', col)
        END;
        EXECUTE format('SELECT count(DISTINCT v), string_agg(DISTINCT v::text, %L) FROM (%s) s',
                       ',', src) INTO n, vals;
        IF n > 50 THEN
            PERFORM pg_notify(TG_ARGV[0], TG_TABLE_NAME);
            RETURN NULL;
        END IF;
        IF n > 0 THEN
            payload := payload || ' ' || split_part(TG_ARGV[i], '=', 1) || '=' || vals;
        END IF;
    END LOOP;
    IF octet_length(payload) > 7000 THEN
        payload := TG_TABLE_NAME;
    END IF;
    PERFORM pg_notify(TG_ARGV[0], payload);
    RETURN NULL;
END
$fn$;

DO $do$
DECLARE
    tab text;
    scopes text[];
    chan text := current_setting('pgshim.notify_channel');
    args text;
BEGIN
    FOREACH tab IN ARRAY ARRAY['bt', 'typeassist', 'asset', 'questionset', 'jobneed',
                               'pgbelonging', 'pgroup', 'capability', 'people'] LOOP
        IF to_regclass(tab) IS NULL THEN
            RAISE WARNING 'pgshim-notify: no table %, skipped', tab;
            CONTINUE;
        END IF;
        EXECUTE format('DROP TRIGGER IF EXISTS pgshim_notify ON %I', tab);
        EXECUTE format('DROP TRIGGER IF EXISTS pgshim_notify_ins ON %I', tab);
        EXECUTE format('DROP TRIGGER IF EXISTS pgshim_notify_upd ON %I', tab);
        EXECUTE format('DROP TRIGGER IF EXISTS pgshim_notify_del ON %I', tab);
        EXECUTE format('DROP TRIGGER IF EXISTS pgshim_notify_trunc ON %I', tab);
        scopes := CASE tab
            WHEN 'jobneed' THEN ARRAY['bu=bu_id', 'client=client_id']
            WHEN 'asset' THEN ARRAY['bu=bu_id']
            WHEN 'questionset' THEN ARRAY['bu=bu_id']
            WHEN 'pgbelonging' THEN ARRAY['people=people_id']
        END;
        IF scopes IS NULL THEN
            EXECUTE format('CREATE TRIGGER pgshim_notify'
                           ' AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I'
                           ' FOR EACH STATEMENT EXECUTE FUNCTION pgshim_notify(%L)', tab, chan);
            EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER pgshim_notify', tab);
            CONTINUE;
        END IF;
        SELECT string_agg(quote_literal(s), ', ') INTO args FROM unnest(scopes) s;
        args := quote_literal(chan) || ', ' || args;
        EXECUTE format('CREATE TRIGGER pgshim_notify_ins AFTER INSERT ON %I'
                       ' REFERENCING NEW TABLE AS pgshim_new'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION pgshim_notify_rows(%s)', tab, args);
        EXECUTE format('CREATE TRIGGER pgshim_notify_upd AFTER UPDATE ON %I'
                       ' REFERENCING OLD TABLE AS pgshim_old NEW TABLE AS pgshim_new'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION pgshim_notify_rows(%s)', tab, args);
        EXECUTE format('CREATE TRIGGER pgshim_notify_del AFTER DELETE ON %I'
                       ' REFERENCING OLD TABLE AS pgshim_old'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION pgshim_notify_rows(%s)', tab, args);
        EXECUTE format('CREATE TRIGGER pgshim_notify_trunc AFTER TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION pgshim_notify(%L)', tab, chan);
        EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER pgshim_notify_ins,'
                       ' ENABLE ALWAYS TRIGGER pgshim_notify_upd,'
                       ' ENABLE ALWAYS TRIGGER pgshim_notify_del,'
                       ' ENABLE ALWAYS TRIGGER pgshim_notify_trunc', tab);
    END LOOP;
    -- A write that committed before these triggers existed sent nothing; pgshim invalidates
    -- every table of the tenant on this unknown payload, which reaches it after that write and
    -- before the sync of any later one.
    PERFORM pg_notify(chan, 'pgshim-notify installed');
END
$do$;

COMMIT;
