#!/usr/bin/python3
"""lsbackup test bed STAND-IN: the on-disk layout of an Apache Kafka 2.8 broker (ZooKeeper mode).

Apache Kafka is not packaged in Debian, so the test bed cannot run a real broker. What the `kafka`
component backs up is files, so this writes those files the way a broker leaves them after a clean
shutdown, in the real formats:

  LOG_DIR/meta.properties                     broker.id, cluster.id, version=0
  LOG_DIR/{recovery-point,replication,log-start}-offset-checkpoint, cleaner-offset-checkpoint
  LOG_DIR/<topic>-<partition>/
      00000000000000000000.log                record batches, magic v2, CRC-32C, varint records
      00000000000000000000.index              8-byte entries (relative offset, file position)
      00000000000000000000.timeindex          12-byte entries (timestamp, relative offset)
      leader-epoch-checkpoint, partition.metadata (topic id)
  (one partition holds two segments, the second starting at offset 40)

The content is deterministic (fixed timestamps and ids), so re-running gives the same bytes.

usage: kafka_layout.py LOG_DIR
"""

import base64
import os
import struct
import sys
import uuid

BASE_TS = 1732500000000  # ms, fixed
CLUSTER_ID = "lsbTestbedClusterId0Aq"  # 22 chars, like Kafka's base64 UUIDs
BROKER_ID = 1
INDEX_INTERVAL_BYTES = 4096  # Kafka's default index.interval.bytes
SEGMENT_RECORDS = 40  # roll the first segment after this many records (partition 0 only)

# topic -> (partitions, records per partition)
TOPICS = {
    "lsbackup-orders": (3, 60),
    "lsbackup-events": (1, 25),
}


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(n: int) -> bytes:
    """Kafka's zig-zag varint (also used for varlong)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def record(offset_delta: int, ts_delta: int, key: bytes, value: bytes) -> bytes:
    body = (
        b"\x00"  # attributes
        + varint(ts_delta)
        + varint(offset_delta)
        + varint(len(key))
        + key
        + varint(len(value))
        + value
        + varint(0)  # headers
    )
    return varint(len(body)) + body


def record_batch(base_offset: int, base_ts: int, msgs) -> bytes:
    """A RecordBatch (magic 2) holding msgs = [(key, value, ts)]."""
    records = b"".join(
        record(i, ts - base_ts, k, v) for i, (k, v, ts) in enumerate(msgs)
    )
    max_ts = max(ts for _, _, ts in msgs)
    after_crc = (
        struct.pack(">hiqqqhi", 0, len(msgs) - 1, base_ts, max_ts, -1, -1, -1)
        + struct.pack(">i", len(msgs))
        + records
    )
    # batchLength counts from partitionLeaderEpoch to the end
    batch_length = 4 + 1 + 4 + len(after_crc)
    return (
        struct.pack(">qiib", base_offset, batch_length, 0, 2)
        + struct.pack(">I", crc32c(after_crc))
        + after_crc
    )


def message(topic: str, partition: int, offset: int):
    ts = BASE_TS + offset * 1000 + partition * 10
    if topic == "lsbackup-orders":
        key = f"order-{partition}-{offset:04d}".encode()
        value = (
            f'{{"order_id":"{partition}-{offset:04d}","item":"widget-{offset % 7}",'
            f'"qty":{offset % 5 + 1},"note":"lsbackup test bed order record"}}'
        ).encode()
    else:
        key = f"event-{offset:04d}".encode()
        value = f"lsbackup test bed event {offset} of partition {partition}".encode()
    return key, value, ts


def write(path: str, data: bytes):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def segment_files(base_offset: int, msgs_with_offsets):
    """(log, index, timeindex) bytes for one segment, batches of up to 5 records."""
    log = bytearray()
    index = bytearray()
    timeindex = bytearray()
    since_index = 0
    max_ts = -1
    for i in range(0, len(msgs_with_offsets), 5):
        chunk = msgs_with_offsets[i : i + 5]
        first_offset = chunk[0][0]
        batch = record_batch(
            first_offset, chunk[0][1][2], [m for _, m in chunk]
        )
        last_offset = chunk[-1][0]
        max_ts = max(max_ts, max(m[2] for _, m in chunk))
        if since_index > INDEX_INTERVAL_BYTES:
            index += struct.pack(">ii", last_offset - base_offset, len(log))
            timeindex += struct.pack(">qi", max_ts, last_offset - base_offset)
            since_index = 0
        log += batch
        since_index += len(batch)
    return bytes(log), bytes(index), bytes(timeindex)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    log_dir = sys.argv[1]
    os.makedirs(log_dir, exist_ok=True)
    end_offsets = {}
    for topic, (partitions, count) in TOPICS.items():
        topic_id = base64.urlsafe_b64encode(
            uuid.uuid5(uuid.NAMESPACE_URL, "lsbackup-testbed/" + topic).bytes
        ).decode().rstrip("=")
        for p in range(partitions):
            d = os.path.join(log_dir, f"{topic}-{p}")
            os.makedirs(d, exist_ok=True)
            msgs = [(o, message(topic, p, o)) for o in range(count)]
            rolls = [0, SEGMENT_RECORDS] if (p == 0 and count > SEGMENT_RECORDS) else [0]
            for si, base in enumerate(rolls):
                stop = rolls[si + 1] if si + 1 < len(rolls) else count
                log, index, timeindex = segment_files(base, msgs[base:stop])
                name = f"{base:020d}"
                write(os.path.join(d, name + ".log"), log)
                write(os.path.join(d, name + ".index"), index)
                write(os.path.join(d, name + ".timeindex"), timeindex)
            write(os.path.join(d, "leader-epoch-checkpoint"), b"0\n1\n0 0\n")
            write(
                os.path.join(d, "partition.metadata"),
                f"version: 0\ntopic_id: {topic_id}\n".encode(),
            )
            end_offsets[(topic, p)] = count

    def checkpoint(values):
        lines = [f"{t} {p} {o}" for (t, p), o in sorted(values.items())]
        return ("0\n%d\n" % len(lines) + "".join(line + "\n" for line in lines)).encode()

    write(os.path.join(log_dir, "recovery-point-offset-checkpoint"), checkpoint(end_offsets))
    write(os.path.join(log_dir, "replication-offset-checkpoint"), checkpoint(end_offsets))
    write(
        os.path.join(log_dir, "log-start-offset-checkpoint"),
        checkpoint({k: 0 for k in end_offsets}),
    )
    write(os.path.join(log_dir, "cleaner-offset-checkpoint"), b"0\n0\n")
    write(
        os.path.join(log_dir, "meta.properties"),
        (
            "#\n#Mon Nov 25 02:00:00 UTC 2024\n"
            f"cluster.id={CLUSTER_ID}\nversion=0\nbroker.id={BROKER_ID}\n"
        ).encode(),
    )


if __name__ == "__main__":
    main()
