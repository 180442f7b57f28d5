-- fparser's flows from Kafka into ClickHouse: the alternative to fparser
-- --clickhouse for a fleet whose hosts publish to Kafka (fparser --kafka, JSON
-- messages). ClickHouse's Kafka engine reads the topic, and a materialized view
-- turns each message into a row of the table of clickhouse.sql, which must exist
-- first. Written for every server from 18.16 on, and tested against 18.16.
--
-- Replace kafka1:9092 by the brokers, host:port with commas between, before
-- running it; the topic is fparser's default, the consumer group names
-- ClickHouse. The queue table declares every field of a message that -o json
-- writes without --features, --tcp-quality, --decap or --packets, so that it
-- needs no setting to skip unknown fields: it expects messages published without
-- them.
--
-- A consumer group that ClickHouse makes anew starts at the end of the topic
-- unless the server's config.xml says otherwise; to take the messages published
-- before, put there:
--   <kafka><auto_offset_reset>smallest</auto_offset_reset></kafka>
--
-- Each statement ends with a semicolon at the end of a line.

CREATE TABLE IF NOT EXISTS fparser_flows_queue
(
    protocol                  String,
    src_ip                    String,
    src_port                  UInt16,
    dst_ip                    String,
    dst_port                  UInt16,
    vlan_id                   UInt16,
    src2dst_packets           UInt64,
    src2dst_bytes             UInt64,
    dst2src_packets           UInt64,
    dst2src_bytes             UInt64,
    src2dst_tcp_flags         String,
    dst2src_tcp_flags         String,
    first_seen                String,
    last_seen                 String,
    bidirectional_duration_ms Float64,
    end_reason                String,
    src2dst_interface         String,
    dst2src_interface         String,
    duplicate_packets         UInt64,
    pid                       UInt32,
    process                   String,
    cgroup                    String,
    community_id              String
)
ENGINE = Kafka('kafka1:9092', 'fparser-flows', 'clickhouse-fparser', 'JSONEachRow');

-- Times come as 2006-01-02T15:04:05.000000000Z; addresses as text, IPv4 mapped
-- into IPv6 as fparser --clickhouse stores them; flags as tcpdump's letters. The
-- host column is empty: the message carries the host in a Kafka header, which the
-- engine of 18.16 cannot read.
--
-- Two views: the first renames the fields that the second converts, since
-- ClickHouse would take the second's aliases (first_seen, ...) for the fields of
-- the same names. The first has the Null engine and keeps nothing; 18.16 runs a
-- view on a view, but neither a view on the table another view writes to nor one
-- on a subquery, for a Kafka table.
CREATE MATERIALIZED VIEW IF NOT EXISTS fparser_flows_renamed ENGINE = Null AS
SELECT
    first_seen AS fs, last_seen AS ls, protocol AS proto, src_ip AS sa, dst_ip AS da, src2dst_tcp_flags AS sf, dst2src_tcp_flags AS df,
    src_port, dst_port, vlan_id, src2dst_packets, src2dst_bytes, dst2src_packets, dst2src_bytes,
    end_reason, src2dst_interface, dst2src_interface, duplicate_packets, pid, process, cgroup, community_id
FROM fparser_flows_queue;

CREATE MATERIALIZED VIEW IF NOT EXISTS fparser_flows_from_kafka TO fparser_flows AS
SELECT
    toDateTime(replaceOne(substring(fs, 1, 19), 'T', ' '), 'UTC') AS first_seen,
    toUInt64(toDateTime(replaceOne(substring(fs, 1, 19), 'T', ' '), 'UTC')) * 1000000000 + toUInt64(substring(fs, 21, 9)) AS first_seen_ns,
    toDateTime(replaceOne(substring(ls, 1, 19), 'T', ' '), 'UTC') AS last_seen,
    toUInt64(toDateTime(replaceOne(substring(ls, 1, 19), 'T', ' '), 'UTC')) * 1000000000 + toUInt64(substring(ls, 21, 9)) AS last_seen_ns,
    toUInt8(multiIf(proto = 'tcp', 6, proto = 'udp', 17, 0)) AS protocol,
    if(position(sa, ':') > 0, IPv6StringToNum(sa), IPv4ToIPv6(IPv4StringToNum(sa))) AS src_ip,
    src_port,
    if(position(da, ':') > 0, IPv6StringToNum(da), IPv4ToIPv6(IPv4StringToNum(da))) AS dst_ip,
    dst_port,
    vlan_id,
    src2dst_packets,
    src2dst_bytes,
    dst2src_packets,
    dst2src_bytes,
    toUInt8((position(sf, 'F') > 0) + 2 * (position(sf, 'S') > 0) + 4 * (position(sf, 'R') > 0) + 8 * (position(sf, 'P') > 0)
        + 16 * (position(sf, '.') > 0) + 32 * (position(sf, 'U') > 0) + 64 * (position(sf, 'E') > 0) + 128 * (position(sf, 'W') > 0)) AS src2dst_tcp_flags,
    toUInt8((position(df, 'F') > 0) + 2 * (position(df, 'S') > 0) + 4 * (position(df, 'R') > 0) + 8 * (position(df, 'P') > 0)
        + 16 * (position(df, '.') > 0) + 32 * (position(df, 'U') > 0) + 64 * (position(df, 'E') > 0) + 128 * (position(df, 'W') > 0)) AS dst2src_tcp_flags,
    end_reason,
    src2dst_interface,
    dst2src_interface,
    duplicate_packets,
    pid,
    process,
    cgroup,
    community_id,
    '' AS host
FROM fparser_flows_renamed;
