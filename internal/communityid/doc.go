// Package communityid holds no code: its test checks the Community ID that fparser
// gives each flow (Flow.CommunityID) against tshark's communityid field for the
// flow's packets, over every capture of testdata and of the shared corpus.
package communityid
