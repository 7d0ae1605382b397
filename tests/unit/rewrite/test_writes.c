/*
 * rw_writes_tables: which legacy tables a statement writes, for cache invalidation. Covers
 * every write form (INSERT, UPDATE, DELETE, TRUNCATE, COPY FROM, MERGE, ALTER/DROP/RENAME),
 * writes hidden in CTEs and EXPLAIN ANALYZE, schema-qualified and quoted names, multi-statement
 * Queries, the read-only look-alikes that must not count, and the conservative answers.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "rw_writes.h"

#define TB(x) (1u << RW_TABLE_##x)

static rw_tableset_t w(const char *sql)
{
    rw_tableset_t set = 12345;
    int rc = rw_writes_tables(sql, &set);
    cr_assert_geq(rc, 0, "rc %d for %s", rc, sql);
    cr_assert_eq(rc, set != 0, "rc %d but set %#x for %s", rc, set, sql);
    return set;
}

#define WRITES(sql, want) cr_expect_eq(w(sql), (rw_tableset_t)(want), "%s", sql)

Test(writes, plain_reads_are_not_writes)
{
    WRITES("select * from fun_getjobneed(1, 2, 3)", 0);
    WRITES("SELECT id FROM bt WHERE id = 1", 0);
    WRITES("select * from jobneed for update", 0);
    WRITES("SELECT * FROM asset a JOIN bt ON bt.id = a.bu_id FOR UPDATE OF a SKIP LOCKED", 0);
    WRITES("select 'insert into bt' as s from bt", 0);
    WRITES("", 0);
    WRITES("begin", 0);
    WRITES("commit", 0);
    WRITES("create index on bt (parent_id)", 0);
    WRITES("CREATE INDEX CONCURRENTLY jobneed_x ON public.jobneed (plandatetime)", 0);
    WRITES("copy bt to stdout", 0);
    WRITES("copy (select * from bt) to stdout", 0);
    WRITES("vacuum analyze bt", 0);
    WRITES("explain select * from bt", 0);
}

Test(writes, dml)
{
    WRITES("insert into bt (id, bucode) values (5, 'X')", TB(BT));
    WRITES("INSERT INTO \"jobneed\" SELECT * FROM jobneed_archive", TB(JOBNEED));
    WRITES("update asset set enable = false where id = 1", TB(ASSET));
    WRITES("delete from questionset where id = 3", TB(QUESTIONSET));
    WRITES("UPDATE people SET peoplename = 'x'", TB(PEOPLE));
    WRITES("insert into pgbelonging values (1) on conflict (id) do update set pgroup_id = 2",
           TB(PGBELONGING));
    WRITES("delete from capability using bt where capability.id = bt.id", TB(CAPABILITY));
    WRITES("insert into typeassist(tacode) values ('SITE') returning id", TB(TYPEASSIST));
    WRITES("update pgroup set groupname = 'g'", TB(PGROUP));
}

Test(writes, reading_a_legacy_table_while_writing_another)
{
    WRITES("insert into other_table select * from bt", 0);
    WRITES("update other_table set x = bt.id from bt where bt.id = other_table.id", 0);
    WRITES("delete from other_table where id in (select id from jobneed)", 0);
    WRITES("insert into audit select * from asset; select * from bt", 0);
}

Test(writes, truncate_copy_merge)
{
    WRITES("truncate bt", TB(BT));
    WRITES("TRUNCATE TABLE jobneed, asset RESTART IDENTITY CASCADE", TB(JOBNEED) | TB(ASSET));
    WRITES("copy bt from stdin", TB(BT));
    WRITES("COPY public.asset (id, assetcode) FROM '/tmp/x.csv' WITH (FORMAT csv)", TB(ASSET));
    WRITES("merge into jobneed j using staging s on j.id = s.id "
           "when matched then update set jobdesc = s.jobdesc "
           "when not matched then insert (id) values (s.id)",
           TB(JOBNEED));
}

Test(writes, ddl)
{
    WRITES("alter table bt add column x int", TB(BT));
    WRITES("ALTER TABLE public.asset ALTER COLUMN assetname TYPE text", TB(ASSET));
    WRITES("drop table if exists jobneed cascade", TB(JOBNEED));
    WRITES("DROP TABLE other, public.pgbelonging", TB(PGBELONGING));
    WRITES("alter table capability rename to capability_old", TB(CAPABILITY));
    WRITES("alter table capability_new rename to capability", TB(CAPABILITY));
    WRITES("alter table bt rename column buname to name", TB(BT));
    WRITES("alter table people set schema archive", TB(PEOPLE));
    WRITES("drop schema public cascade", RW_TABLES_ALL);
    WRITES("drop view bt_view", 0);
    WRITES("alter table other add column bt int", 0);
}

Test(writes, ctes)
{
    WRITES("with x as (update jobneed set jobstatus = 'X' where id = 1 returning *) "
           "select * from x",
           TB(JOBNEED));
    WRITES("WITH d AS (DELETE FROM asset WHERE id = 1 RETURNING id) "
           "INSERT INTO asset_log SELECT id FROM d",
           TB(ASSET));
    WRITES("with a as (select * from bt) update other set x = 1 from a", 0);
    WRITES("with a as (select * from bt) update jobneed set x = 1 from a", TB(JOBNEED));
    WRITES("with recursive t as (select id from bt union all select bt.id from bt join t on "
           "bt.parent_id = t.id) select * from t",
           0);
}

Test(writes, names)
{
    WRITES("insert into public.bt values (1)", TB(BT));
    WRITES("insert into \"public\".\"bt\" values (1)", TB(BT));
    WRITES("INSERT INTO BT VALUES (1)", TB(BT));                 /* folded to bt */
    WRITES("insert into \"BT\" values (1)", 0);                  /* a different table */
    WRITES("insert into other_schema.bt values (1)", TB(BT));    /* counted: cheap, safe */
    WRITES("insert into bt_archive values (1)", 0);
    WRITES("insert into mydb.public.jobneed values (1)", TB(JOBNEED));
    WRITES("/* insert into bt */ select 1", 0);
    WRITES("-- update bt\nselect * from bt", 0);
}

Test(writes, multi_statement_queries)
{
    WRITES("begin; update bt set buname = 'a' where id = 2; insert into jobneed values (1); "
           "commit;",
           TB(BT) | TB(JOBNEED));
    WRITES("select 1; select * from bt; delete from asset", TB(ASSET));
    WRITES("explain analyze delete from questionset", TB(QUESTIONSET));
    WRITES("prepare p as update bt set x = 1", TB(BT));
}

Test(writes, opaque_statements_invalidate_everything)
{
    WRITES("do $$ begin perform 1; end $$", RW_TABLES_ALL);
    WRITES("call refresh_everything()", RW_TABLES_ALL);
    WRITES("execute p(1)", RW_TABLES_ALL);
}

Test(writes, unparsable_text_is_conservative)
{
    /* Syntax libpg_query (PostgreSQL 15) does not know: assume the named tables are written. */
    WRITES("update bt set x = 1 wherever it pleases", TB(BT));
    WRITES("insert into bt and jobneed (", TB(BT) | TB(JOBNEED));
}

Test(writes, prefilter)
{
    const char *yes[] = {"update bt set x=1", "INSERT INTO jobneed", "do $$ $$",
                         "select * from bt for update"};
    const char *no[] = {"select * from bt", "insert into other values (1)",
                        "select * from fun_getjobneed(1,2,3)", "update other set bt_id = 1"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        cr_expect(rw_writes_prefilter(yes[i], strlen(yes[i])), "%s", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        cr_expect_not(rw_writes_prefilter(no[i], strlen(no[i])), "%s", no[i]);
}

Test(writes, deep_nesting_does_not_overflow)
{
    /* 3000 nested parentheses in the WHERE of an UPDATE: libpg_query may refuse the depth,
       then the conservative path still reports bt. */
    static char sql[16384];
    strcpy(sql, "update bt set x = 1 where ");
    for (int i = 0; i < 3000; i++)
        strcat(sql, "(");
    strcat(sql, "true");
    for (int i = 0; i < 3000; i++)
        strcat(sql, ")");
    cr_expect_eq(w(sql), TB(BT));
    /* A long flat boolean chain parses into a deep tree. */
    static char sql2[65536];
    strcpy(sql2, "delete from jobneed where id = 0");
    for (int i = 1; i < 2000; i++) {
        char t[32];
        snprintf(t, sizeof t, " or id = %d", i);
        strcat(sql2, t);
    }
    cr_expect_eq(w(sql2), TB(JOBNEED));
}

Test(writes, function_tables)
{
    cr_expect_eq(rw_fn_reads(RW_FN_MENUPBT), TB(BT));
    cr_expect_eq(rw_fn_reads(RW_FN_GET_BULIST), TB(BT));
    cr_expect_eq(rw_fn_reads(RW_FN_GETBULIST_BASEDON_IDNF), TB(BT) | TB(TYPEASSIST));
    cr_expect_eq(rw_fn_reads(RW_FN_GETASSETVSQUESTIONSET), TB(QUESTIONSET));
    cr_expect_eq(rw_fn_reads(RW_FN_GETASSETDETAILS), TB(ASSET) | TB(QUESTIONSET) | TB(BT));
    cr_expect_eq(rw_fn_reads(RW_FN_GETJOBNEED), TB(JOBNEED) | TB(PGBELONGING));
    cr_expect_eq(rw_fn_reads(RW_FN_GETEXTTOURJOBNEED), TB(JOBNEED) | TB(PGBELONGING));
    cr_expect_eq(rw_fn_reads(RW_FN_GET_SCHEDULE_FOR_ADHOC), TB(JOBNEED) | TB(PGBELONGING));
    cr_expect_eq(rw_fn_reads(RW_FN_WEB_CAPS_FOR_CLIENT), TB(CAPABILITY));
    for (int f = 0; f < RW_FN__COUNT; f++)
        cr_expect_neq(rw_fn_reads((rw_fn_t)f), 0, "fn %d reads nothing", f);
    cr_expect(rw_fn_depends_on_date(RW_FN_GETJOBNEED));
    cr_expect(rw_fn_depends_on_date(RW_FN_GETEXTTOURJOBNEED));
    cr_expect_not(rw_fn_depends_on_date(RW_FN_GET_SCHEDULE_FOR_ADHOC));
    cr_expect_not(rw_fn_depends_on_date(RW_FN_GETASSETDETAILS));

    const char *names[RW_TABLE__COUNT];
    int n = rw_tableset_names(rw_fn_reads(RW_FN_GETASSETDETAILS), names, RW_TABLE__COUNT);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(names[0], "bt");
    cr_expect_str_eq(names[1], "asset");
    cr_expect_str_eq(names[2], "questionset");
    cr_expect_eq(rw_table_lookup("jobneed"), RW_TABLE_JOBNEED);
    cr_expect_eq(rw_table_lookup("JOBNEED"), -1);
    cr_expect_str_eq(rw_table_name(RW_TABLE_PEOPLE), "people");
}

/* rw_writes_classify: only row writes fire the NOTIFY triggers; anything else on a legacy table
   must be invalidated table-level by pgshim itself. */
static bool other(const char *sql, rw_tableset_t *set)
{
    bool o = true;
    int rc = rw_writes_classify(sql, set, &o);
    cr_assert_geq(rc, 0, "rc %d for %s", rc, sql);
    return o;
}

#define COVERED(sql, want)                                                           \
    do {                                                                              \
        rw_tableset_t s_;                                                             \
        cr_expect(!other(sql, &s_), "should be covered: %s", sql);                    \
        cr_expect_eq(s_, (rw_tableset_t)(want), "%s", sql);                           \
    } while (0)
#define UNCOVERED(sql)                                                                \
    do {                                                                              \
        rw_tableset_t s_;                                                             \
        cr_expect(other(sql, &s_), "should be uncovered: %s", sql);                   \
        cr_expect_neq(s_, 0, "%s", sql);                                              \
    } while (0)

Test(writes, classify_row_writes_are_covered)
{
    COVERED("update jobneed set jobstatus = 'X' where id = 1", TB(JOBNEED));
    COVERED("insert into public.asset (id) values (1)", TB(ASSET));
    COVERED("delete from pgbelonging where people_id = 3", TB(PGBELONGING));
    COVERED("truncate questionset", TB(QUESTIONSET));
    COVERED("copy jobneed from stdin", TB(JOBNEED));
    COVERED("with x as (update jobneed set seqno = 1 returning id) select * from x", TB(JOBNEED));
    COVERED("merge into asset a using (select 1 as id) s on a.id = s.id "
            "when matched then update set enable = false", TB(ASSET));
    COVERED("update jobneed set seqno = 1; create index on jobneed (seqno)", TB(JOBNEED));
    COVERED("select 1", 0);
}

Test(writes, classify_other_writes_are_not)
{
    UNCOVERED("alter table jobneed add column x int");
    UNCOVERED("update jobneed set seqno = 1; alter table jobneed drop column x");
    UNCOVERED("update tenant_b.jobneed set seqno = 1");
    UNCOVERED("drop table asset");
    UNCOVERED("do $$ begin end $$");
    UNCOVERED("call p()");
    UNCOVERED("execute s(1)");
    UNCOVERED("update jobneed set where");  /* does not parse */
    UNCOVERED("alter table other rename to jobneed");
}

Test(writes, scopes_follow_the_spec)
{
    rw_scope_t s[4];
    cr_assert_eq(rw_fn_scopes(RW_FN_GETJOBNEED, s, 4), 2);
    cr_expect_eq(s[0].table, RW_TABLE_JOBNEED);
    cr_expect_str_eq(s[0].scope, "bu");
    cr_expect_eq(s[0].arg, 1);
    cr_expect_eq(s[1].table, RW_TABLE_PGBELONGING);
    cr_expect_eq(s[1].arg, 0);
    cr_assert_eq(rw_fn_scopes(RW_FN_GETEXTTOURJOBNEED, s, 4), 2);
    cr_expect_str_eq(s[0].scope, "client");
    cr_expect_eq(s[0].arg, 2);
    cr_assert_eq(rw_fn_scopes(RW_FN_GET_SCHEDULE_FOR_ADHOC, s, 4), 2);
    cr_expect_eq(s[0].arg, 1);
    cr_expect_eq(s[1].arg, 2);
    cr_assert_eq(rw_fn_scopes(RW_FN_GETASSETDETAILS, s, 4), 2);
    cr_expect_eq(s[0].table, RW_TABLE_ASSET);
    cr_expect_eq(s[1].table, RW_TABLE_QUESTIONSET);
    cr_expect_eq(s[1].arg, 1);
    cr_assert_eq(rw_fn_scopes(RW_FN_GETASSETVSQUESTIONSET, s, 4), 1);
    cr_expect_eq(s[0].arg, 0);
    cr_expect_eq(rw_fn_scopes(RW_FN_MENUPBT, s, 4), 0);
    cr_expect_eq(rw_fn_scopes(RW_FN_WEB_CAPS_FOR_CLIENT, s, 4), 0);
    /* every scoped table a function reads is one the triggers scope */
    for (int fn = 0; fn < RW_FN__COUNT; fn++) {
        int n = rw_fn_scopes((rw_fn_t)fn, s, 4);
        for (int i = 0; i < n; i++)
            cr_expect(rw_fn_reads((rw_fn_t)fn) & RW_TABLES_SCOPED & (1u << s[i].table));
    }
}
