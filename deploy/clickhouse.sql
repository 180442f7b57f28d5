-- fparser's flows in ClickHouse.
--
-- The table that fparser --clickhouse (package clickhouse) inserts into, one row per
-- flow, with an explicit column list. It is written for every server from 18.16
-- (Debian 12's clickhouse-server) on, and tested against 18.16:
--
--   * Addresses are FixedString(16): IPv6 as its 16 bytes, IPv4 as ::ffff:a.b.c.d
--     (what IPv4ToIPv6 gives), so both sort in one order, and filter alike:
--       WHERE src_ip = IPv4ToIPv6(IPv4StringToNum('192.0.2.1'))
--       WHERE src_ip = IPv6StringToNum('2001:db8::1')
--     and IPv6NumToString(src_ip) prints either. (Servers from 19.3 on have an IPv6
--     type, the same 16 bytes; this table does not need it.)
--   * Times are DateTime, to the second, for partitions and order, with UInt64 ns
--     since the Unix epoch beside them. (Servers from 20.1 on have DateTime64(9);
--     this table does not need it.)
--   * The protocol is its IANA number: 6 for TCP, 17 for UDP; the TCP flags are
--     bits, CWR ECE URG ACK PSH RST SYN FIN from the high bit down.
--
-- The ORDER BY puts a time range first, then the conversation: "top talkers in the
-- last hour" reads one hour's parts. docs/clickhouse.md has the queries.
--
-- Each statement ends with a semicolon at the end of a line: the tests run them one
-- by one, as clickhouse-client --multiquery does.

CREATE TABLE IF NOT EXISTS fparser_flows
(
    first_seen        DateTime,
    first_seen_ns     UInt64,
    last_seen         DateTime,
    last_seen_ns      UInt64,
    protocol          UInt8,
    src_ip            FixedString(16),
    src_port          UInt16,
    dst_ip            FixedString(16),
    dst_port          UInt16,
    vlan_id           UInt16,
    src2dst_packets   UInt64,
    src2dst_bytes     UInt64,
    dst2src_packets   UInt64,
    dst2src_bytes     UInt64,
    src2dst_tcp_flags UInt8,
    dst2src_tcp_flags UInt8,
    end_reason        String,
    src2dst_interface String,
    dst2src_interface String,
    duplicate_packets UInt64,
    pid               UInt32,
    process           String,
    cgroup            String,
    community_id      String,
    host              String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(first_seen)
ORDER BY (first_seen, src_ip, dst_ip, src_port, dst_port, protocol);
