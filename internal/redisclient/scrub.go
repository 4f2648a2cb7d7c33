package redisclient

import (
	"strings"
	"sync"
)

// The passwords of the live clients, so that text that did not come from
// us — go-redis's log lines, Redis's error replies — can be scrubbed of them
// before it is logged. A password shorter than minScrubbed is not
// searched for: it would blank unrelated text, and no URL-safe rule here
// could find it reliably anyway.
const minScrubbed = 4

var secrets = struct {
	sync.Mutex
	uses map[string]int
}{uses: map[string]int{}}

func rememberSecret(s string) {
	if len(s) < minScrubbed {
		return
	}
	secrets.Lock()
	secrets.uses[s]++
	secrets.Unlock()
}

func forgetSecret(s string) {
	if len(s) < minScrubbed {
		return
	}
	secrets.Lock()
	if secrets.uses[s]--; secrets.uses[s] <= 0 {
		delete(secrets.uses, s)
	}
	secrets.Unlock()
}

// Scrub replaces every live client's password in text with ***.
func Scrub(text string) string {
	secrets.Lock()
	defer secrets.Unlock()
	for s := range secrets.uses {
		text = strings.ReplaceAll(text, s, "***")
	}
	return text
}
