-- Follows and blocks between users. A block removes the follows in both directions (the
-- handler does it in the same transaction) and hides the blocked user's content from the
-- blocker's feeds, whispers and search.
create table follows (
    follower_id text not null references profiles (user_id),
    followee_id text not null references profiles (user_id),
    created_at  timestamptz not null default now(),
    primary key (follower_id, followee_id),
    constraint follows_not_self check (follower_id <> followee_id)
);

-- Whom a user follows and who follows a user, newest first.
create index follows_follower_idx on follows (follower_id, created_at desc);
create index follows_followee_idx on follows (followee_id, created_at desc);

create table blocks (
    blocker_id text not null references profiles (user_id),
    blocked_id text not null references profiles (user_id),
    created_at timestamptz not null default now(),
    primary key (blocker_id, blocked_id),
    constraint blocks_not_self check (blocker_id <> blocked_id)
);

-- Shelves: a user's named lists of stories. Deleting a shelf deletes its items.
create table shelves (
    id         bigint generated always as identity primary key,
    owner_id   text not null references profiles (user_id),
    name       text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint shelves_name_length check (char_length(name) between 1 and 100)
);

create unique index shelves_owner_name_key on shelves (owner_id, lower(name));

-- A story on a shelf (a "save"); a story can sit on many shelves.
create table shelf_items (
    shelf_id   bigint not null references shelves (id) on delete cascade,
    story_id   bigint not null references stories (id),
    added_at   timestamptz not null default now(),
    primary key (shelf_id, story_id)
);

-- Saves of a story in the last hours (trending).
create index shelf_items_story_idx on shelf_items (story_id, added_at desc);
-- A shelf's stories, last added first.
create index shelf_items_shelf_idx on shelf_items (shelf_id, added_at desc, story_id desc);

-- Whispers: short posts, global (story_id null) or about a story, optionally replying to
-- another whisper (a reply is in its parent's story). Soft-deleted whispers keep their row so
-- replies stay attached. reply_count counts the replies not deleted, like_count the rows of
-- whisper_likes; both change in the transaction that changes what they count.
create table whispers (
    id          bigint generated always as identity primary key,
    author_id   text not null references profiles (user_id),
    story_id    bigint references stories (id),
    parent_id   bigint references whispers (id),
    body        text not null,
    reply_count integer not null default 0,
    like_count  integer not null default 0,
    created_at  timestamptz not null default now(),
    deleted_at  timestamptz,
    constraint whispers_body_length check (char_length(body) between 1 and 500),
    constraint whispers_counts_not_negative check (reply_count >= 0 and like_count >= 0)
);

-- Feeds, newest first: global, per story (every whisper, and the top-level ones), replies of
-- a whisper, per author.
create index whispers_global_idx on whispers (id desc) where story_id is null and parent_id is null;
create index whispers_story_idx on whispers (story_id, id desc) where story_id is not null;
create index whispers_story_top_idx on whispers (story_id, id desc) where story_id is not null and parent_id is null;
create index whispers_parent_idx on whispers (parent_id, id desc) where parent_id is not null;
create index whispers_author_idx on whispers (author_id, id desc);

-- One like per user and whisper.
create table whisper_likes (
    whisper_id bigint not null references whispers (id),
    user_id    text not null references profiles (user_id),
    created_at timestamptz not null default now(),
    primary key (whisper_id, user_id)
);
