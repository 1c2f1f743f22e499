-- A database of realistic proportions for EXPLAIN tests: tens of thousands of stories,
-- thousands of tags, users and events over a month, most of them older than a day.
insert into profiles (user_id, handle, display_name)
select 'u' || i, 'user_' || i, 'Writer ' || i from generate_series(1, 1000) i;

insert into stories (author_id, title, blurb, chapter_seq, published_at, deleted_at)
select 'u' || (1 + i % 1000),
       (array['Dragon', 'Night', 'Crown', 'Harbor', 'Garden', 'Winter', 'Ember', 'Mirror', 'River', 'Lantern',
              'Orchid', 'Falcon', 'Signal', 'Velvet', 'Summit', 'Tundra', 'Cipher', 'Meadow', 'Anchor', 'Comet'])[1 + i % 20]
           || ' ' || substr(md5(i::text), 1, 10),
       'A tale of ' || substr(md5((i * 7)::text), 1, 8),
       1 + i % 30,
       case when i % 10 <> 0 then now() - (i % 700) * interval '1 hour' end,
       case when i % 20 = 1 then now() end
from generate_series(1, 20000) i;

insert into tags (name) select 'tag-' || i from generate_series(1, 3000) i;
-- Without the tags' trigger, which would rewrite every story to add its tags to its search
-- document: plans do not depend on that, and it would take most of the seeding's time.
alter table story_tags disable trigger story_tags_search_doc_insert;
insert into story_tags (story_id, tag_id)
select s.id, t.id from stories s
cross join lateral (values (1 + s.id % 3000), (1 + (s.id * 7) % 3000), (1 + (s.id * 13) % 3000)) k (n)
join tags t on t.name = 'tag-' || k.n
on conflict do nothing;
alter table story_tags enable trigger story_tags_search_doc_insert;

insert into shelves (owner_id, name) select user_id, 'Favourites' from profiles;
insert into shelf_items (shelf_id, story_id, added_at)
select sh.id, 1 + (sh.id * 31 + i * 17) % 20000, now() - ((sh.id + i) % 720) * interval '1 hour'
from shelves sh, generate_series(1, 20) i
on conflict do nothing;

insert into story_reads (story_id, user_id, read_at)
select 1 + (i * 13) % 20000, case when i % 2 = 0 then 'u' || (1 + i % 1000) end, now() - (i % 720) * interval '1 hour' - (i % 60) * interval '1 minute'
from generate_series(1, 50000) i
on conflict do nothing;

insert into story_likes (story_id, user_id, created_at)
select 1 + (i * 17) % 20000, 'u' || (1 + i % 1000), now() - (i % 720) * interval '1 hour'
from generate_series(1, 20000) i
on conflict do nothing;

insert into whispers (author_id, story_id, body, created_at)
select 'u' || (1 + i % 1000), case when i % 2 = 0 then 1 + (i * 7) % 20000 end, 'whisper ' || i, now() - (i % 720) * interval '1 hour'
from generate_series(1, 20000) i;

insert into blocks (blocker_id, blocked_id)
select 'u' || (1 + i % 1000), 'u' || (1 + (i * 7 + 1) % 1000) from generate_series(1, 2000) i
where 1 + i % 1000 <> 1 + (i * 7 + 1) % 1000
on conflict do nothing;

insert into story_trending (story_id, score, computed_at)
select id, (id % 97) / 10.0, now() from stories where published_at is not null and deleted_at is null and id % 3 = 0;
