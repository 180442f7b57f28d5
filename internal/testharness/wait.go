package testharness

import (
	"testing"
	"time"
)

// PollEvery is the pause between two checks of Poll's condition.
const PollEvery = 10 * time.Millisecond

// Poll checks cond until it holds or within has passed, and says whether it held.
// Between two checks it pauses PollEvery, however long a check takes, so that a
// dear condition (Parser.Info walks the kernel's map) leaves the machine to what it
// waits for.
func Poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	pause := time.NewTimer(PollEvery)
	defer pause.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		pause.Reset(PollEvery)
		<-pause.C
	}
	return true
}

// WaitFor waits for cond as Poll does; if it does not hold within the time, it fails
// the test, saying what it waited for.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(within, cond) {
		t.Fatalf("waited %v for %s", within, what)
	}
}
