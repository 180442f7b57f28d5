// Package tcpquality holds no code: its test checks the TCP quality that fparser
// measures (Options.TCPQuality) against tshark's TCP analysis of the same packets,
// flow by flow and direction by direction, over every capture of testdata and of
// the shared corpus.
package tcpquality
