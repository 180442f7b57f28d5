// Package flowpb is the protobuf form of a flow that the Kafka producer sends with
// Config.Format "protobuf": flow.proto, and flow.pb.go generated from it.
package flowpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative flow.proto
