-- Audit log: one row per mutation of the API, written in the transaction of the change
-- (appserver/audit). Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE whoever
-- asks (the owner too), and the app's role, muejam_app, has no UPDATE, DELETE or TRUNCATE
-- on it. Partitioned by month (UTC); audit_ensure_partitions creates the coming months'
-- partitions and audit_drop_partitions drops the ones older than the retention, the only
-- way rows leave.

-- The role the app server's login role belongs to (grant muejam_app to <login>): every
-- privilege of the API's tables but changing or removing audit events. Created when the
-- migrating user may create roles; elsewhere an operator creates it (README).
do $$
begin
    if not exists (select from pg_roles where rolname = 'muejam_app')
       and (select rolsuper or rolcreaterole from pg_roles where rolname = current_user) then
        create role muejam_app nologin;
    end if;
exception when duplicate_object or unique_violation then
    null; -- another database of the cluster created it meanwhile
end $$;

create table audit_events (
    id          bigint generated always as identity,
    at          timestamptz not null default now(),
    actor       text not null,  -- the user id, as the edge forwards it
    action      text not null,  -- story.publish, user.follow, ...
    target_type text not null,  -- story, chapter, user, shelf, whisper, profile
    target_id   text not null,
    outcome     text not null default 'success',
    request_id  text not null,  -- the edge's X-Request-Id
    client      text,           -- the client's address, pseudonymized ([ip:HEX]); null without a key
    before      jsonb,          -- for edits, the changed fields before...
    after       jsonb,          -- ...and after
    primary key (id, at)
) partition by range (at);

-- GET /v1/me/activity: an actor's events, newest first.
create index audit_events_actor_idx on audit_events (actor, id desc);
-- Operators: "who changed this?"
create index audit_events_target_idx on audit_events (target_type, target_id, at);

create function audit_events_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit_events is append-only: % refused', tg_op
        using errcode = 'insufficient_privilege';
end $$;

create trigger audit_events_no_change before update or delete on audit_events
    for each row execute function audit_events_append_only();
create trigger audit_events_no_truncate before truncate on audit_events
    for each statement execute function audit_events_append_only();

-- audit_ensure_partitions creates the partitions of the current month and the next
-- `months` - 1 ones (UTC), if missing; it returns the names it created. Security definer:
-- the app's role calls it at start and daily without owning the table.
create function audit_ensure_partitions(months int default 3) returns setof text
language plpgsql security definer set search_path = public as $$
declare
    first timestamp := date_trunc('month', now() at time zone 'UTC');
    lo timestamp;
    name text;
begin
    for i in 0 .. months - 1 loop
        lo := first + make_interval(months => i);
        name := 'audit_events_' || to_char(lo, 'YYYYMM');
        if to_regclass(name) is null then
            execute format('create table %I partition of audit_events for values from (%L) to (%L)',
                name, lo at time zone 'UTC', (lo + interval '1 month') at time zone 'UTC');
            execute format('create trigger audit_events_no_truncate before truncate on %I
                for each statement execute function audit_events_append_only()', name);
            execute format('revoke update, delete, truncate on %I from public', name);
            if exists (select from pg_roles where rolname = 'muejam_app') then
                execute format('revoke all on %I from muejam_app', name);
            end if;
            return next name;
        end if;
    end loop;
end $$;

-- audit_drop_partitions drops the partitions whose whole month ended more than `keep`
-- ago, and returns their names: retention (AUDIT_RETENTION).
create function audit_drop_partitions(keep interval) returns setof text
language plpgsql security definer set search_path = public as $$
declare
    part record;
begin
    for part in
        select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'audit_events'::regclass and c.relname ~ '^audit_events_[0-9]{6}$'
        order by c.relname
    loop
        if (to_timestamp(substr(part.relname, 14), 'YYYYMM')::timestamp + interval '1 month')
                at time zone 'UTC' <= now() - keep then
            execute format('drop table %I', part.relname);
            return next part.relname;
        end if;
    end loop;
end $$;

revoke update, delete, truncate on audit_events from public;
do $$
begin
    if exists (select from pg_roles where rolname = 'muejam_app') then
        grant usage on schema public to muejam_app;
        grant select, insert, update, delete on all tables in schema public to muejam_app;
        grant usage, select on all sequences in schema public to muejam_app;
        revoke update, delete, truncate on audit_events from muejam_app;
        grant execute on function audit_ensure_partitions(int), audit_drop_partitions(interval) to muejam_app;
    end if;
end $$;

-- After the grants: the partitions themselves grant the app's role nothing.
select audit_ensure_partitions(2);
