-- Stories: drafts until published_at is set; soft-deleted when deleted_at is set. version
-- counts edits for optimistic concurrency (ETag "v<version>"). chapter_seq is the number of
-- the last chapter created: taking the next one locks the story row, so concurrent
-- chapter creations get distinct numbers.
create table stories (
    id           bigint generated always as identity primary key,
    author_id    text not null references profiles (user_id),
    title        text not null,
    blurb        text not null default '',
    version      bigint not null default 1,
    chapter_seq  integer not null default 0,
    published_at timestamptz,
    deleted_at   timestamptz,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint stories_title_length check (char_length(title) between 1 and 200),
    constraint stories_blurb_length check (char_length(blurb) <= 2000)
);

-- An author's stories, newest first.
create index stories_author_idx on stories (author_id, id desc);
-- The "new" feed: published, not deleted, newest first (keyset on published_at, id).
create index stories_published_idx on stories (published_at desc, id desc)
    where published_at is not null and deleted_at is null;

-- Chapters, numbered from 1 within their story. content_html is content_md rendered and
-- sanitized when written, so reads never render.
create table chapters (
    story_id     bigint not null references stories (id),
    number       integer not null,
    title        text not null,
    content_md   text not null,
    content_html text not null,
    version      bigint not null default 1,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    primary key (story_id, number),
    constraint chapters_number_positive check (number > 0),
    constraint chapters_title_length check (char_length(title) between 1 and 200)
);

-- Tags: lowercase names, shared by every story that carries them.
create table tags (
    id   bigint generated always as identity primary key,
    name text not null unique,
    constraint tags_name_format check (name ~ '^[a-z0-9][a-z0-9-]{0,29}$')
);

create table story_tags (
    story_id bigint not null references stories (id),
    tag_id   bigint not null references tags (id),
    primary key (story_id, tag_id)
);

-- Stories of a tag (discover ?tag=), newest first by id.
create index story_tags_tag_idx on story_tags (tag_id, story_id desc);
