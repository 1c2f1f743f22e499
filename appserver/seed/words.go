package seed

// The vocabulary of the generated text. Words used in handles have at most 10 letters, so
// that a handle (adjective_noun plus a number) fits in 30 characters.
var (
	adjectives = []string{
		"amber", "ancient", "bitter", "blazing", "bright", "broken", "burning", "crimson", "crooked", "cursed",
		"distant", "drowned", "electric", "emerald", "endless", "fallen", "feral", "forgotten", "frozen", "gentle",
		"gilded", "glass", "golden", "hidden", "hollow", "iron", "ivory", "last", "lonely", "lost",
		"lunar", "midnight", "misty", "nameless", "quiet", "restless", "rusty", "sacred", "scarlet", "secret",
		"shattered", "silent", "silver", "sleeping", "solar", "stolen", "strange", "sunken", "velvet", "wandering",
		"wicked", "wild", "winter", "wistful", "hungry", "clever", "brave", "little", "hazel", "sullen",
	}
	nouns = []string{
		"anchor", "archive", "ash", "bell", "blade", "bridge", "castle", "cipher", "circus", "city",
		"comet", "compass", "crown", "dragon", "dream", "ember", "empire", "falcon", "feather", "forest",
		"fox", "garden", "ghost", "harbor", "heart", "heir", "hunter", "island", "key", "kingdom",
		"knight", "lantern", "library", "lighthouse", "map", "meadow", "mirror", "moon", "mountain", "oath",
		"ocean", "orchard", "orchid", "palace", "phoenix", "pirate", "prince", "queen", "raven", "river",
		"rose", "sea", "serpent", "shadow", "ship", "signal", "song", "spell", "star", "storm",
		"summit", "sword", "thief", "throne", "tide", "tower", "train", "tundra", "valley", "voyage",
		"wanderer", "warden", "whale", "witch", "wolf", "wren", "saint", "sparrow", "letter", "clock",
	}
	verbs = []string{
		"find", "steal", "break", "save", "chase", "forget", "guard", "hunt", "join", "leave",
		"outrun", "protect", "rebuild", "remember", "rescue", "return", "seek", "survive", "trust", "wake",
	}
	firstNames = []string{
		"Ada", "Amara", "Ben", "Caleb", "Chloe", "Daniel", "Elena", "Elias", "Farah", "Felix",
		"Grace", "Hana", "Isaac", "Iris", "Jonah", "Julia", "Kai", "Lena", "Leo", "Lucia",
		"Maya", "Mateo", "Nadia", "Noah", "Olivia", "Omar", "Priya", "Quinn", "Rosa", "Sami",
		"Sofia", "Theo", "Uma", "Victor", "Wen", "Yara", "Yusuf", "Zoe", "Aiko", "Bruno",
	}
	lastNames = []string{
		"Abbott", "Bauer", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen",
		"Kowalski", "Laurent", "Moreau", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi", "Silva", "Tanaka",
		"Ueda", "Vargas", "Weber", "Xu", "Yilmaz", "Zhang", "Novak", "Singh", "Murphy", "Costa",
	}
	// genres are the first tags, the most used.
	genres = []string{
		"fantasy", "romance", "mystery", "horror", "sci-fi", "thriller", "adventure", "drama", "comedy", "historical",
		"poetry", "fanfiction", "dystopian", "paranormal", "short-story", "slow-burn", "found-family", "enemies-to-lovers",
		"space-opera", "cozy", "grimdark", "urban-fantasy", "steampunk", "cyberpunk", "fairy-tale", "mythology",
		"coming-of-age", "magic-school", "time-travel", "post-apocalyptic", "gothic", "noir", "heist", "court-intrigue",
		"slice-of-life", "epic", "werewolves", "vampires", "dragons", "pirates",
	}
	shelfNames = []string{"Favourites", "Read later", "Currently reading", "Finished", "Comfort reads", "To recommend", "Weekend", "Classics"}
	bioLines   = []string{
		"Writing stories about %s and %s.", "Reader first, writer second. Mostly %s.", "I collect %ss and half-finished drafts.",
		"Tea, rain and %s stories.", "Updates every Sunday. Currently obsessed with %ss.",
	}
	// blurbs and sentences are templates whose %s take adjectives, nouns and verbs in the
	// order of the letters in their names: a adjective, n noun, v verb.
	blurbs = []struct{ text, slots string }{
		{"When the %s %s falls, only a %s %s can %s what was lost.", "anaav"},
		{"A %s must %s the %s %s before the %s %s wakes.", "nvananan"},
		{"Nobody in the %s %s remembers the %s. Nobody except one %s %s.", "annan"},
		{"Some %ss are meant to %s. This one was meant to %s.", "nvv"},
		{"Two %ss, one %s %s, and a %s that could %s them all.", "nannv"},
		{"The %s %s has kept its %s for a hundred years.", "ann"},
	}
	sentences = []struct{ text, slots string }{
		{"The %s %s waited by the %s, as it had every night.", "ann"},
		{"She did not %s the %s; she only wanted to %s it.", "vnv"},
		{"Somewhere beyond the %s %s, a %s began to sing.", "ann"},
		{"He had promised to %s the %s, and promises were all he had left.", "vn"},
		{"Rain fell on the %s %s until the %s gave way.", "ann"},
		{"They said the %s could %s anything but a %s %s.", "nvan"},
		{"Nobody spoke of the %s after that, not even the %s.", "nn"},
		{"It was a %s morning, and the %s smelled of %s.", "ann"},
		{"I will %s you, the %s whispered, if you %s me first.", "vnv"},
		{"The map showed a %s %s where no %s should be.", "ann"},
	}
	whisperLines = []struct{ text, slots string }{
		{"Just finished the %s arc and I need to talk about the %s.", "nn"},
		{"That ending with the %s %s?! I was not ready.", "an"},
		{"Does anyone else think the %s is secretly the %s?", "nn"},
		{"Chapter %d broke me.", "d"},
		{"Recommend me something with a %s %s please", "an"},
		{"The author's way of describing the %s is so %s.", "na"},
		{"Waiting for the next chapter like a %s %s waits for the %s.", "ann"},
		{"Rereading this for the %d time, still love the %s.", "dn"},
		{"Hot take: the %s deserved better.", "n"},
		{"Anyone up for a buddy read of something %s this weekend?", "a"},
	}
)
