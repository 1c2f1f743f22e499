-- Profiles: one row per user the edge has authenticated (the id is the token's subject).
create table profiles (
    user_id      text primary key,
    handle       text not null,
    display_name text not null default '',
    bio          text not null default '',
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint profiles_handle_format check (handle ~ '^[A-Za-z0-9_]{3,30}$')
);

-- Handles are unique regardless of case.
create unique index profiles_handle_key on profiles (lower(handle));
