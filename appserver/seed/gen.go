package seed

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muejam/edge/appserver/markdown"
)

// Proportions of the generated data.
const (
	draftShare          = 0.10 // stories never published
	deletedShare        = 0.02 // stories soft-deleted
	replyShare          = 0.20 // whispers replying to another
	storyWhisperShare   = 0.50 // top-level whispers about a story
	deletedWhisperShare = 0.01
	anonymousReadShare  = 0.50
	maxStoryTags        = 5
	chapterTemplates    = 100
	whisperBodies       = 4096
	history             = 2 * 365 * 24 * time.Hour // users and stories appear over two years
	eventWindow         = 30 * 24 * time.Hour      // likes, reads, saves and whispers: the last 30 days
	popularity          = 2.0                      // exponent of the skew of events towards popular stories, users, whispers
)

// gen generates the rows. Every table's rows are drawn from one random source in a fixed
// order, so a seed gives the same data set; attributes of pairs (the time of a like) are
// hashed from the pair, so pairs can be sorted and deduplicated without carrying them.
type gen struct {
	r    *rand.Rand
	seed uint64
	sz   Sizes
	now  int64 // microseconds since the epoch, like every time below
	from int64 // start of the history

	userCreated []int64
	popularUser []int32 // users in popularity order (followees)
	blocks      map[uint64]bool

	storyAuthor    []int32
	storyCreated   []int64
	storyPublished []int64 // 0: a draft
	public         []int32 // stories published and not deleted, in popularity order
	chapterCount   []int32

	whisperAuthor  []int32
	whisperStory   []int32 // -1: global
	whisperParent  []int32 // -1: top level
	whisperCreated []int64
	whisperDeleted []int64 // 0: not deleted
	whisperReplies []int32
	whisperLikes   []int32
	likePairs      []uint64 // whisper<<32 | user, sorted

	shelfCreated []int64
}

func newGen(seed int64, now time.Time, sz Sizes) *gen {
	n := now.UnixMicro()
	return &gen{
		r:    rand.New(rand.NewPCG(uint64(seed), 0x6d75656a616d)),
		seed: uint64(seed),
		sz:   sz,
		now:  n,
		from: n - history.Microseconds(),
	}
}

// UserID is the user id (the token subject) of the n-th generated user, from 1.
func UserID(n int) string { return "u" + strconv.Itoa(n) }

func at(us int64) time.Time { return time.UnixMicro(us).UTC() }

// skewed returns an index below n, 0 the most likely: n·u^popularity for a uniform u.
func (g *gen) skewed(n int) int {
	return min(n-1, int(float64(n)*math.Pow(g.r.Float64(), popularity)))
}

// between returns a time in [lo, hi).
func (g *gen) between(lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return lo + g.r.Int64N(hi-lo)
}

// hashed returns a number in [0, 1) determined by key and salt.
func (g *gen) hashed(key, salt uint64) float64 {
	x := key ^ (g.seed+salt)*0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// hashedBetween returns a time in [lo, hi) determined by key and salt.
func (g *gen) hashedBetween(key, salt uint64, lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return lo + int64(g.hashed(key, salt)*float64(hi-lo))
}

// usersAt is how many users exist at time t (users are created in id order over the
// history), at least 1.
func (g *gen) usersAt(t int64) int {
	n := int(float64(t-g.from) / float64(g.now-g.from) * float64(g.sz.Users))
	return max(1, min(g.sz.Users, n+1))
}

func (g *gen) word(list []string) string { return list[g.r.IntN(len(list))] }

// fill fills a template's %s and %d in the order of slots (see blurbs).
func (g *gen) fill(text, slots string) string {
	args := make([]any, len(slots))
	for i, s := range slots {
		switch s {
		case 'a':
			args[i] = g.word(adjectives)
		case 'n':
			args[i] = g.word(nouns)
		case 'v':
			args[i] = g.word(verbs)
		case 'd':
			args[i] = 2 + g.r.IntN(40)
		}
	}
	return fmt.Sprintf(text, args...)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (g *gen) title() string {
	a, n, m := capitalize(g.word(adjectives)), capitalize(g.word(nouns)), capitalize(g.word(nouns))
	switch g.r.IntN(6) {
	case 0:
		return "The " + a + " " + n
	case 1:
		return n + " of " + m
	case 2:
		return a + " " + n + "s"
	case 3:
		return "The " + n + "'s " + m
	case 4:
		return "When the " + n + " " + capitalize(g.word(verbs)) + "s"
	default:
		return n + " and the " + a + " " + m
	}
}

// source adapts a row generator to COPY: next fills row and reports whether it did.
func source(row []any, next func(row []any) bool) pgx.CopyFromSource {
	return pgx.CopyFromFunc(func() ([]any, error) {
		if !next(row) {
			return nil, nil
		}
		return row, nil
	})
}

// uniquePairs returns n distinct pairs a<<32|b, sorted, drawn with pick (which reports
// false for a pair that may not exist). The first rounds draw with the skew of pick; when
// popular items run out of partners, later rounds pass uniform to ask for uniform draws.
func uniquePairs(n int, what string, pick func(uniform bool) (a, b int32, ok bool)) ([]uint64, error) {
	pairs := make([]uint64, 0, n)
	for round := 0; len(pairs) < n; round++ {
		if round == 40 {
			return nil, fmt.Errorf("seed: only %d distinct %s of %d could be drawn: ask for fewer", len(pairs), what, n)
		}
		for misses := 0; len(pairs) < cap(pairs) && misses < 100*n; {
			a, b, ok := pick(round >= 4)
			if !ok {
				misses++
				continue
			}
			pairs = append(pairs, uint64(a)<<32|uint64(b))
		}
		slices.Sort(pairs)
		pairs = slices.Compact(pairs)
	}
	return pairs, nil
}

func split(p uint64) (a, b int32) { return int32(p >> 32), int32(p & 0xffffffff) }

// profiles: users created evenly over the history, ids u1, u2, ...
func (g *gen) profiles() ([]string, pgx.CopyFromSource) {
	n := g.sz.Users
	g.userCreated = make([]int64, n)
	step := (g.now - g.from) / int64(max(n, 1))
	for i := range n {
		g.userCreated[i] = g.from + int64(i)*step + g.r.Int64N(max(step, 1))
	}
	g.popularUser = make([]int32, n)
	for i, u := range g.r.Perm(n) {
		g.popularUser[i] = int32(u)
	}
	i := 0
	return []string{"user_id", "handle", "display_name", "bio", "created_at", "updated_at"},
		source(make([]any, 6), func(row []any) bool {
			if i == n {
				return false
			}
			bio := ""
			if g.r.IntN(3) == 0 {
				line := bioLines[g.r.IntN(len(bioLines))]
				args := make([]any, strings.Count(line, "%s"))
				for k := range args {
					args[k] = g.word(nouns)
				}
				bio = fmt.Sprintf(line, args...)
			}
			created := at(g.userCreated[i])
			row[0], row[1] = UserID(i+1), g.word(adjectives)+"_"+g.word(nouns)+strconv.Itoa(i+1)
			row[2], row[3], row[4], row[5] = g.word(firstNames)+" "+g.word(lastNames), bio, created, created
			i++
			return true
		})
}

// tagNames returns n tag names: the genres, then adjective-noun pairs, then numbered ones.
func tagNames(n int) []string {
	names := slices.Clone(genres)
	for _, a := range adjectives {
		for _, s := range nouns {
			names = append(names, a+"-"+s)
			if len(names) >= n {
				return names[:n]
			}
		}
	}
	for i := 1; len(names) < n; i++ {
		names = append(names, "tag-"+strconv.Itoa(i))
	}
	return names[:n]
}

func (g *gen) tags() ([]string, pgx.CopyFromSource) {
	names := tagNames(g.sz.Tags)
	i := 0
	return []string{"id", "name"}, source(make([]any, 2), func(row []any) bool {
		if i == len(names) {
			return false
		}
		row[0], row[1] = int64(i+1), names[i]
		i++
		return true
	})
}

// storyTags gives every story 1 to 5 tags, the first tags (the genres) the most used, in
// the order of the primary key.
func (g *gen) storyTags() ([]string, pgx.CopyFromSource) {
	story, tags := 0, make([]int, 0, maxStoryTags)
	return []string{"story_id", "tag_id"}, source(make([]any, 2), func(row []any) bool {
		for len(tags) == 0 {
			if story == g.sz.Stories || g.sz.Tags == 0 {
				return false
			}
			story++
			for range 1 + g.r.IntN(min(maxStoryTags, g.sz.Tags)) {
				if t := 1 + g.skewed(g.sz.Tags); !slices.Contains(tags, t) {
					tags = append(tags, t)
				}
			}
			slices.Sort(tags)
			slices.Reverse(tags)
		}
		row[0], row[1] = int64(story), int64(tags[len(tags)-1])
		tags = tags[:len(tags)-1]
		return true
	})
}

// planStories decides the stories' authors, publication and chapter counts: every story
// has a chapter, the others go to stories at random, half of them skewed towards some, for
// a long tail of long stories.
func (g *gen) planStories() {
	n := g.sz.Stories
	g.storyAuthor = make([]int32, n)
	g.storyCreated = make([]int64, n)
	g.storyPublished = make([]int64, n)
	g.chapterCount = make([]int32, n)
	for i := range n {
		g.chapterCount[i] = 1
	}
	order := g.r.Perm(n)
	for range g.sz.Chapters - n {
		if g.r.IntN(2) == 0 {
			g.chapterCount[g.r.IntN(n)]++
		} else {
			g.chapterCount[order[g.skewed(n)]]++
		}
	}
}

func (g *gen) stories() ([]string, pgx.CopyFromSource) {
	g.planStories()
	n := g.sz.Stories
	step := (g.now - time.Hour.Microseconds() - g.from) / int64(max(n, 1))
	var public []int32
	i := 0
	return []string{"id", "author_id", "title", "blurb", "version", "chapter_seq", "published_at", "deleted_at", "created_at", "updated_at"},
		source(make([]any, 10), func(row []any) bool {
			if i == n {
				g.public = make([]int32, len(public))
				for k, p := range g.r.Perm(len(public)) {
					g.public[k] = public[p]
				}
				return false
			}
			created := g.from + int64(i)*step + g.r.Int64N(max(step, 1))
			author := g.skewed(g.usersAt(created))
			g.storyAuthor[i], g.storyCreated[i] = int32(author), created
			var published, deleted *time.Time
			updated := created
			if i == 0 || g.r.Float64() >= draftShare {
				p := g.between(created, min(g.now, created+(72*time.Hour).Microseconds()))
				g.storyPublished[i], updated = p, p
				published = new(at(p))
			}
			if i > 0 && g.r.Float64() < deletedShare {
				d := g.between(updated, g.now)
				updated = d
				deleted = new(at(d))
			} else if published != nil {
				public = append(public, int32(i))
			}
			var blurb strings.Builder
			for k := range 1 + g.r.IntN(3) {
				if k > 0 {
					blurb.WriteByte(' ')
				}
				b := blurbs[g.r.IntN(len(blurbs))]
				blurb.WriteString(capitalize(g.fill(b.text, b.slots)))
			}
			row[0], row[1], row[2], row[3] = int64(i+1), UserID(author+1), g.title(), blurb.String()
			row[4], row[5], row[6], row[7] = int64(1+g.r.IntN(3)), g.chapterCount[i], published, deleted
			row[8], row[9] = at(created), at(updated)
			i++
			return true
		})
}

// chapterText is a chapter's markdown and its rendering.
type chapterText struct{ md, html string }

// chapterTexts writes n chapters of two to four paragraphs and renders each once: chapters
// share them, which keeps the generation cheap and every chapter's HTML the real rendering
// of its markdown.
func (g *gen) chapterTexts(n int) ([]chapterText, error) {
	texts := make([]chapterText, n)
	for i := range texts {
		var md strings.Builder
		for p := range 2 + g.r.IntN(3) {
			switch {
			case p > 0 && g.r.IntN(6) == 0:
				md.WriteString("\n\n* * *\n\n")
			case p > 0:
				md.WriteString("\n\n")
			}
			if g.r.IntN(8) == 0 {
				md.WriteString("> ")
			}
			for s := range 2 + g.r.IntN(3) {
				if s > 0 {
					md.WriteByte(' ')
				}
				t := sentences[g.r.IntN(len(sentences))]
				line := capitalize(g.fill(t.text, t.slots))
				if g.r.IntN(5) == 0 {
					line = "*" + line + "*"
				}
				md.WriteString(line)
			}
		}
		html, err := markdown.Render(md.String())
		if err != nil {
			return nil, err
		}
		texts[i] = chapterText{md.String(), html}
	}
	return texts, nil
}

// chapters are numbered from 1 in each story, written over the story's life.
func (g *gen) chapters() ([]string, pgx.CopyFromSource, error) {
	texts, err := g.chapterTexts(chapterTemplates)
	if err != nil {
		return nil, nil, err
	}
	story, number := 0, int32(0)
	return []string{"story_id", "number", "title", "content_md", "content_html", "created_at", "updated_at"},
		source(make([]any, 7), func(row []any) bool {
			for story < len(g.chapterCount) && number == g.chapterCount[story] {
				story, number = story+1, 0
			}
			if story == len(g.chapterCount) {
				return false
			}
			number++
			created := g.storyCreated[story]
			t := at(created + (g.now-created)*int64(number-1)/int64(g.chapterCount[story]+1))
			title := capitalize(g.word(adjectives)) + " " + capitalize(g.word(nouns))
			if g.r.IntN(2) == 0 {
				title = "Chapter " + strconv.Itoa(int(number)) + ": " + title
			}
			text := texts[g.r.IntN(len(texts))]
			row[0], row[1], row[2], row[3], row[4], row[5], row[6] = int64(story+1), number, title, text.md, text.html, t, t
			return true
		}), nil
}

// blocked reports whether user a blocks user b.
func (g *gen) blocked(a, b int32) bool { return g.blocks[uint64(a)<<32|uint64(b)] }

// pairs copies sorted pairs a<<32|b, each a row that fill writes.
func pairs(columns []string, ps []uint64, fill func(row []any, a, b int32, key uint64)) ([]string, pgx.CopyFromSource) {
	i := 0
	return columns, source(make([]any, len(columns)), func(row []any) bool {
		if i == len(ps) {
			return false
		}
		a, b := split(ps[i])
		fill(row, a, b, ps[i])
		i++
		return true
	})
}

// userPair draws two distinct users, the second from the popular ones unless uniform.
func (g *gen) userPair(uniform bool) (a, b int32, ok bool) {
	a = int32(g.r.IntN(g.sz.Users))
	if uniform {
		b = int32(g.r.IntN(g.sz.Users))
	} else {
		b = g.popularUser[g.skewed(g.sz.Users)]
	}
	return a, b, a != b
}

func (g *gen) blocksRows() ([]string, pgx.CopyFromSource, error) {
	ps, err := uniquePairs(g.sz.Blocks, "blocks", func(bool) (int32, int32, bool) { return g.userPair(true) })
	if err != nil {
		return nil, nil, err
	}
	g.blocks = make(map[uint64]bool, len(ps))
	for _, p := range ps {
		g.blocks[p] = true
	}
	cols, src := pairs([]string{"blocker_id", "blocked_id", "created_at"}, ps, func(row []any, a, b int32, key uint64) {
		row[0], row[1], row[2] = UserID(int(a)+1), UserID(int(b)+1), at(g.hashedBetween(key, 1, max(g.userCreated[a], g.userCreated[b]), g.now))
	})
	return cols, src, nil
}

// follows: popular users have many followers; none between users who block each other.
func (g *gen) follows() ([]string, pgx.CopyFromSource, error) {
	ps, err := uniquePairs(g.sz.Follows, "follows", func(uniform bool) (int32, int32, bool) {
		a, b, ok := g.userPair(uniform)
		return a, b, ok && !g.blocked(a, b) && !g.blocked(b, a)
	})
	if err != nil {
		return nil, nil, err
	}
	cols, src := pairs([]string{"follower_id", "followee_id", "created_at"}, ps, func(row []any, a, b int32, key uint64) {
		row[0], row[1], row[2] = UserID(int(a)+1), UserID(int(b)+1), at(g.hashedBetween(key, 2, max(g.userCreated[a], g.userCreated[b]), g.now))
	})
	return cols, src, nil
}

// shelves: each of a user's shelves has the next of shelfNames (numbered once they run out).
func (g *gen) shelves() ([]string, pgx.CopyFromSource) {
	n := g.sz.Shelves
	g.shelfCreated = make([]int64, n)
	count := make([]int32, g.sz.Users)
	i := 0
	return []string{"id", "owner_id", "name", "created_at", "updated_at"}, source(make([]any, 5), func(row []any) bool {
		if i == n {
			return false
		}
		owner := int32(g.r.IntN(g.sz.Users))
		k := int(count[owner])
		count[owner]++
		name := shelfNames[k%len(shelfNames)]
		if k >= len(shelfNames) {
			name += " " + strconv.Itoa(k/len(shelfNames)+1)
		}
		g.shelfCreated[i] = g.between(g.userCreated[owner], g.now)
		t := at(g.shelfCreated[i])
		row[0], row[1], row[2], row[3], row[4] = int64(i+1), UserID(int(owner)+1), name, t, t
		i++
		return true
	})
}

// publicStory draws a public story, the popular ones more often unless uniform.
func (g *gen) publicStory(uniform bool) int32 {
	if uniform {
		return g.public[g.r.IntN(len(g.public))]
	}
	return g.public[g.skewed(len(g.public))]
}

// recent returns the time of an event in the last eventWindow, after lo and before now,
// determined by key and salt.
func (g *gen) recent(key, salt uint64, lo int64) int64 {
	return g.hashedBetween(key, salt, max(lo, g.now-eventWindow.Microseconds()), g.now)
}

func (g *gen) shelfItems() ([]string, pgx.CopyFromSource, error) {
	ps, err := uniquePairs(g.sz.ShelfItems, "shelf items", func(uniform bool) (int32, int32, bool) {
		return int32(g.r.IntN(g.sz.Shelves)), g.publicStory(uniform), true
	})
	if err != nil {
		return nil, nil, err
	}
	cols, src := pairs([]string{"shelf_id", "story_id", "added_at"}, ps, func(row []any, shelf, story int32, key uint64) {
		row[0], row[1], row[2] = int64(shelf+1), int64(story+1), at(g.recent(key, 3, max(g.storyPublished[story], g.shelfCreated[shelf])))
	})
	return cols, src, nil
}

// storyUserPairs draws distinct (public story, user) pairs.
func (g *gen) storyUserPairs(n int, what string) ([]uint64, error) {
	return uniquePairs(n, what, func(uniform bool) (int32, int32, bool) {
		return g.publicStory(uniform), int32(g.r.IntN(g.sz.Users)), true
	})
}

func (g *gen) storyLikes() ([]string, pgx.CopyFromSource, error) {
	ps, err := g.storyUserPairs(g.sz.StoryLikes, "story likes")
	if err != nil {
		return nil, nil, err
	}
	cols, src := pairs([]string{"story_id", "user_id", "created_at"}, ps, func(row []any, story, user int32, key uint64) {
		row[0], row[1], row[2] = int64(story+1), UserID(int(user)+1), at(g.recent(key, 4, max(g.storyPublished[story], g.userCreated[user])))
	})
	return cols, src, nil
}

// storyReads: anonymous reads, then signed-in ones, each of a distinct story and user (so
// none repeats within an hour).
func (g *gen) storyReads() ([]string, pgx.CopyFromSource, error) {
	anonymous := int(float64(g.sz.StoryReads) * anonymousReadShare)
	ps, err := g.storyUserPairs(g.sz.StoryReads-anonymous, "signed-in story reads")
	if err != nil {
		return nil, nil, err
	}
	i := 0
	return []string{"id", "story_id", "user_id", "read_at"}, source(make([]any, 4), func(row []any) bool {
		switch {
		case i < anonymous:
			story := g.publicStory(false)
			row[1], row[2] = int64(story+1), nil
			row[3] = at(g.between(max(g.storyPublished[story], g.now-eventWindow.Microseconds()), g.now))
		case i < g.sz.StoryReads:
			story, user := split(ps[i-anonymous])
			row[1], row[2] = int64(story+1), UserID(int(user)+1)
			row[3] = at(g.recent(ps[i-anonymous], 5, max(g.storyPublished[story], g.userCreated[user])))
		default:
			return false
		}
		row[0] = int64(i + 1)
		i++
		return true
	}), nil
}

// planWhispers lays the whispers out over the last eventWindow in id order: a fifth reply
// to a recent whisper (in its story), half of the others are about a public story. A user
// whispers about no story of an author who blocks them and replies to no one who does.
// A deleted whisper is deleted after its last reply; reply_count counts the replies not
// deleted, like_count the likes planned here.
func (g *gen) planWhispers() error {
	n := g.sz.Whispers
	g.whisperAuthor = make([]int32, n)
	g.whisperStory = make([]int32, n)
	g.whisperParent = make([]int32, n)
	g.whisperCreated = make([]int64, n)
	g.whisperDeleted = make([]int64, n)
	g.whisperReplies = make([]int32, n)
	g.whisperLikes = make([]int32, n)
	lastReply := make([]int32, n)
	start := g.now - eventWindow.Microseconds()
	step := eventWindow.Microseconds() / int64(max(n, 1))
	for i := range n {
		t := start + int64(i)*step + g.r.Int64N(max(step, 1))
		g.whisperCreated[i] = t
		author := int32(g.r.IntN(g.usersAt(t)))
		g.whisperAuthor[i], g.whisperStory[i], g.whisperParent[i] = author, -1, -1
		switch {
		case i > 0 && g.r.Float64() < replyShare:
			p := int32(i - 1 - g.skewed(min(i, 20000)))
			if g.blocked(g.whisperAuthor[p], author) {
				break // a top-level whisper instead
			}
			g.whisperParent[i], g.whisperStory[i] = p, g.whisperStory[p]
			lastReply[p] = int32(i)
		case len(g.public) > 0 && g.r.Float64() < storyWhisperShare:
			s := g.publicStory(false)
			if g.storyPublished[s] < t && !g.blocked(g.storyAuthor[s], author) {
				g.whisperStory[i] = s
			}
		}
		if g.r.Float64() < deletedWhisperShare {
			g.whisperDeleted[i] = -1 // decided below, after its last reply
		}
	}
	for i := range n {
		if g.whisperDeleted[i] != 0 {
			g.whisperDeleted[i] = g.between(max(g.whisperCreated[i], g.whisperCreated[lastReply[i]])+1, g.now)
		}
		if p := g.whisperParent[i]; p >= 0 && g.whisperDeleted[i] == 0 {
			g.whisperReplies[p]++
		}
	}
	popular := g.r.Perm(n)
	var err error
	g.likePairs, err = uniquePairs(g.sz.WhisperLikes, "whisper likes", func(uniform bool) (int32, int32, bool) {
		w := int32(popular[g.skewed(n)])
		if uniform {
			w = int32(g.r.IntN(n))
		}
		u := int32(g.r.IntN(g.sz.Users))
		return w, u, !g.blocked(g.whisperAuthor[w], u)
	})
	for _, p := range g.likePairs {
		w, _ := split(p)
		g.whisperLikes[w]++
	}
	return err
}

func (g *gen) whispers() ([]string, pgx.CopyFromSource, error) {
	if err := g.planWhispers(); err != nil {
		return nil, nil, err
	}
	bodies := make([]string, whisperBodies)
	for i := range bodies {
		l := whisperLines[g.r.IntN(len(whisperLines))]
		bodies[i] = g.fill(l.text, l.slots)
	}
	i := 0
	return []string{"id", "author_id", "story_id", "parent_id", "body", "reply_count", "like_count", "created_at", "deleted_at"},
		source(make([]any, 9), func(row []any) bool {
			if i == len(g.whisperCreated) {
				return false
			}
			row[0], row[1], row[2], row[3] = int64(i+1), UserID(int(g.whisperAuthor[i])+1), nil, nil
			if s := g.whisperStory[i]; s >= 0 {
				row[2] = int64(s + 1)
			}
			if p := g.whisperParent[i]; p >= 0 {
				row[3] = int64(p + 1)
			}
			row[4], row[5], row[6], row[7], row[8] = bodies[g.r.IntN(len(bodies))], g.whisperReplies[i], g.whisperLikes[i], at(g.whisperCreated[i]), nil
			if d := g.whisperDeleted[i]; d != 0 {
				row[8] = at(d)
			}
			i++
			return true
		}), nil
}

func (g *gen) whisperLikeRows() ([]string, pgx.CopyFromSource) {
	return pairs([]string{"whisper_id", "user_id", "created_at"}, g.likePairs, func(row []any, w, u int32, key uint64) {
		created := g.whisperCreated[w]
		// Most likes come soon after the whisper.
		t := created + int64(math.Pow(g.hashed(key, 6), 4)*float64(g.now-created))
		row[0], row[1], row[2] = int64(w+1), UserID(int(u)+1), at(max(t, g.userCreated[u]))
	})
}
