//go:build !race

package fparser_test

// raceDetector says the tests run under the race detector.
const raceDetector = false
