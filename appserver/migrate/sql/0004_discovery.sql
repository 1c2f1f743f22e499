-- Discovery: story likes and reads (engagement), trending scores, full-text search and
-- prefix suggestions.

-- One like per user and story.
create table story_likes (
    story_id   bigint not null references stories (id),
    user_id    text not null references profiles (user_id),
    created_at timestamptz not null default now(),
    primary key (story_id, user_id)
);

-- Likes of the last hours (trending).
create index story_likes_created_idx on story_likes (created_at);

-- Reads of a story. Anonymous reads have no user_id and are all counted; a signed-in user's
-- reads of a story count once per UTC hour (story_reads_user_hour_key, insert ... on
-- conflict do nothing), so recording a read is one insert. user_id is the token's subject
-- as the edge forwards it, not a foreign key: a read needs no profile.
create table story_reads (
    id       bigint generated always as identity primary key,
    story_id bigint not null references stories (id),
    user_id  text,
    read_at  timestamptz not null default now()
);

create unique index story_reads_user_hour_key
    on story_reads (story_id, user_id, date_trunc('hour', read_at at time zone 'UTC'))
    where user_id is not null;
-- Reads of the last hours (trending).
create index story_reads_read_at_idx on story_reads (read_at);

-- The trending job reads the events of the last 24 hours of every kind by time; these two
-- tables of 0003 only had indexes by story.
create index shelf_items_added_idx on shelf_items (added_at);
create index whispers_story_created_idx on whispers (created_at) where story_id is not null and deleted_at is null;

-- Trending scores, replaced whole by each run of the trending job (package discover): the
-- sum over a story's saves, reads, likes and whispers of the last 24 hours of
-- 0.98^(hours since the event), as of computed_at. Stories without such events have no row;
-- rows of stories that are not public (deleted since) are skipped by readers.
create table story_trending (
    story_id    bigint primary key references stories (id),
    score       double precision not null,
    computed_at timestamptz not null
);

-- The trending feed, keyset-paginated on (score desc, story_id desc).
create index story_trending_rank_idx on story_trending (score desc, story_id desc);

-- When the trending job last computed, so that app servers ticking together compute once.
create table trending_runs (
    singleton   boolean primary key default true,
    computed_at timestamptz not null,
    constraint trending_runs_one_row check (singleton)
);

-- Full-text search. A story's search document covers its title (weight A), its author's
-- handle and display name and its tags (B), and its blurb (C). Author and tags live in other
-- tables, so a generated column cannot hold it, and an expression index cannot either (the
-- expression must be immutable and read only the row). It is a column of stories kept up to
-- date by triggers instead of by handlers: a change of title or blurb (stories, before the
-- row is written), of tags (story_tags, once per statement) or of the author's handle or
-- display name (profiles) refreshes it in the same transaction, whichever package made the
-- change. The GIN index covers the public stories only (the partial index of the feeds).
alter table stories add column search_doc tsvector;

create function story_search_document(p_story bigint, p_author text, p_title text, p_blurb text)
returns tsvector language sql stable as $$
    select setweight(to_tsvector('english', p_title), 'A')
        || setweight(to_tsvector('english', coalesce(
               (select p.handle || ' ' || p.display_name from profiles p where p.user_id = p_author), '')), 'B')
        || setweight(to_tsvector('english', coalesce(
               (select string_agg(t.name, ' ') from story_tags st join tags t on t.id = st.tag_id where st.story_id = p_story), '')), 'B')
        || setweight(to_tsvector('english', p_blurb), 'C')
$$;

create function stories_search_doc_row() returns trigger language plpgsql as $$
begin
    new.search_doc := story_search_document(new.id, new.author_id, new.title, new.blurb);
    return new;
end
$$;

create trigger stories_search_doc
    before insert or update of title, blurb, author_id on stories
    for each row execute function stories_search_doc_row();

create function story_tags_search_doc() returns trigger language plpgsql as $$
begin
    update stories s set search_doc = story_search_document(s.id, s.author_id, s.title, s.blurb)
    where s.id in (select story_id from changed);
    return null;
end
$$;

create trigger story_tags_search_doc_insert
    after insert on story_tags referencing new table as changed
    for each statement execute function story_tags_search_doc();
create trigger story_tags_search_doc_delete
    after delete on story_tags referencing old table as changed
    for each statement execute function story_tags_search_doc();

create function profiles_search_doc() returns trigger language plpgsql as $$
begin
    update stories s set search_doc = story_search_document(s.id, s.author_id, s.title, s.blurb)
    where s.author_id = new.user_id;
    return null;
end
$$;

create trigger profiles_search_doc
    after update of handle, display_name on profiles
    for each row when (old.handle is distinct from new.handle or old.display_name is distinct from new.display_name)
    execute function profiles_search_doc();

update stories set search_doc = story_search_document(id, author_id, title, blurb);
alter table stories alter column search_doc set not null;

create index stories_search_idx on stories using gin (search_doc)
    where published_at is not null and deleted_at is null;

-- Prefix suggestions (GET /v1/search/suggest): byte-wise btree indexes (text_pattern_ops,
-- whatever the database's collation) on what is matched, queried with the range
-- lower(x) ~>=~ prefix and lower(x) ~<~ prefix || U+10FFFF, which an index serves for a bound
-- parameter too (a LIKE pattern needs a constant). pg_trgm would also match inside words but
-- is an extension, and for one- or two-letter prefixes has no trigram to look up.
create index stories_title_prefix_idx on stories (lower(title) text_pattern_ops)
    where published_at is not null and deleted_at is null;
create index tags_name_prefix_idx on tags (name text_pattern_ops);
create index profiles_handle_prefix_idx on profiles (lower(handle) text_pattern_ops);
