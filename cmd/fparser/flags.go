package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/clickhouse"
	"github.com/fparser/fparser/ipfix"
	"github.com/fparser/fparser/kafka"
)

// Exit statuses, as tcpdump and most commands have them.
const (
	exitOK      = 0
	exitFailure = 1 // the command was understood, and something failed while it ran
	exitUsage   = 2 // the command line asks for something that cannot be done
)

// usageError is a command line that cannot be done as given: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// exitCode is the status for err: 2 for a usage error or an option or filter the
// library refused, 1 for the rest.
func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) || errors.Is(err, fparser.ErrOption) || errors.Is(err, fparser.ErrFilter) || errors.Is(err, ipfix.ErrConfig) || errors.Is(err, kafka.ErrConfig) || errors.Is(err, clickhouse.ErrConfig) {
		return exitUsage
	}
	return exitFailure
}

// durationValue is a duration flag whose error says what is wanted: flag's own
// says only "parse error", which a bare "5" gets.
type durationValue time.Duration

func (d *durationValue) String() string { return time.Duration(*d).String() }

func (d *durationValue) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration with a unit, such as 5s, 2m or 500ms")
	}
	*d = durationValue(v)
	return nil
}

func durationFlag(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var((*durationValue)(p), name, usage)
}

// byteSize is a size flag: a whole number of bytes, or of KiB, MiB or GiB with K,
// M or G after it.
type byteSize int64

func (b *byteSize) String() string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"G", 30}, {"M", 20}, {"K", 10}} {
		if *b > 0 && int64(*b)%(1<<u.shift) == 0 {
			return strconv.FormatInt(int64(*b)>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *byteSize) Set(s string) error {
	shift := 0
	switch {
	case strings.HasSuffix(s, "K"):
		shift = 10
	case strings.HasSuffix(s, "M"):
		shift = 20
	case strings.HasSuffix(s, "G"):
		shift = 30
	}
	digits := s
	if shift > 0 {
		digits = s[:len(s)-1]
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || v <= 0 || v > (1<<62)>>shift {
		return errors.New("want a positive size in bytes, or with K, M or G, such as 64M")
	}
	*b = byteSize(v << shift)
	return nil
}

// flagName is a flag as a user types it: -r, --flow-timeout.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// The flag package's messages, to say again with the flag as the user types it.
var (
	badValue   = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-([^:]+): (.*)$`)
	unknown    = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	needsValue = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
)

// parseFlags parses args with fs, whose usage goes to stdout for -h. Options may
// follow the filter words, as with tcpdump: it parses again from each word that
// looks like an option ("-o", "--flow-timeout"), and returns the other words.
// A bad option is one line that says what is wanted, not the usage: help is -h.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, usage func(io.Writer)) (words []string, help bool, err error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				usage(stdout)
				return nil, true, nil
			}
			return nil, false, &usageError{flagMessage(fs, err)}
		}
		rest := fs.Args()
		i := 0
		for i < len(rest) && !looksLikeOption(rest[i]) {
			i++
		}
		words = append(words, rest[:i]...)
		if i == len(rest) {
			return words, false, nil
		}
		args = rest[i:]
	}
}

// flagMessage says an error of the flag package again with the flag as the user
// types it and, for a number, what is wanted instead of "parse error".
func flagMessage(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if m := unknown.FindStringSubmatch(msg); m != nil {
		return "unknown option " + flagName(m[1]) + " (see -h)"
	}
	if m := needsValue.FindStringSubmatch(msg); m != nil {
		return flagName(m[1]) + " needs a value"
	}
	m := badValue.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	value, name, reason := m[1], m[2], m[3]
	if reason == "parse error" {
		reason = "want a whole number"
		if f := fs.Lookup(name); f != nil {
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
				reason = "want true or false"
			}
		}
	}
	return fmt.Sprintf("%s %s: %s", flagName(name), flagValue(value), reason)
}

// printUsage writes text and fs's options to w.
func printUsage(fs *flag.FlagSet, text string) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, text)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// setFlags are the flags the command line gave, by name.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// onlyWith refuses the flags of names that were given without the condition they
// need, which want says.
func onlyWith(set map[string]bool, ok bool, want string, names ...string) error {
	if ok {
		return nil
	}
	for _, n := range names {
		if set[n] {
			return usagef("%s %s", flagName(n), want)
		}
	}
	return nil
}

// optionFlags name the flags behind the library's options, for its errors.
var optionFlags = map[string]string{
	"FlowTimeout":   "--flow-timeout",
	"FinTimeout":    "--fin-timeout",
	"ActiveTimeout": "--active-timeout",
	"Snaplen":       "-s",
	"Packets":       "--packets",
	"MaxFlows":      "--max-flows",
	"Attach":        "--attach",
	"PinDir":        "--pin",
	"CoarseClock":   "--coarse-clock",
	"ReplaySpeed":   "--speed",
}

// ipfixFlags name the flags behind ipfix.Config's fields.
var ipfixFlags = map[string]string{
	"Network":      "--ipfix-proto",
	"Address":      "--ipfix",
	"WriteTimeout": "--ipfix-timeout",
}

// errorMessage is err as the command says it: the library's option and
// configuration errors name the flag the user typed, not a Go field.
func errorMessage(err error) string {
	var oe *fparser.OptionError
	if errors.As(err, &oe) {
		if name, ok := optionFlags[oe.Option]; ok {
			return fmt.Sprintf("%s %v: %s", name, flagValue(oe.Value), oe.Reason)
		}
	}
	var ce *ipfix.ConfigError
	if errors.As(err, &ce) {
		if name, ok := ipfixFlags[ce.Field]; ok {
			return fmt.Sprintf("%s %v: %s", name, flagValue(ce.Value), ce.Reason)
		}
	}
	return err.Error()
}

// flagValue is v as it was typed.
func flagValue(v any) any {
	if s, ok := v.(string); ok && (s == "" || strings.ContainsAny(s, " \t")) {
		return fmt.Sprintf("%q", s)
	}
	return v
}
