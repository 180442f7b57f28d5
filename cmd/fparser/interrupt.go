package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// interrupts receives SIGINT and SIGTERM from the start of the process, before
// anything is attached: one that comes while the programs are being attached stops the
// parser the clean way once they are, instead of killing the process and leaving
// clsact filters behind. Notify also undoes a SIGINT ignore the process inherited (a
// command started with & by a shell without job control), so Ctrl-C and kill -INT
// work even then.
var interrupts = make(chan os.Signal, 1)

func init() { catchInterrupts() }

func catchInterrupts() { signal.Notify(interrupts, os.Interrupt, syscall.SIGTERM) }

// onInterrupt returns a context that ends at the first SIGINT or SIGTERM, including
// one that came before the call, and a stop after which such a signal kills the
// process again, as it does a program that does not catch it.
func onInterrupt() (context.Context, func()) {
	catchInterrupts()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		select {
		case <-interrupts:
			cancel()
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(interrupts)
			close(done)
			cancel()
		})
	}
}
