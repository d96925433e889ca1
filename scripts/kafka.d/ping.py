#!/usr/bin/env python3
"""Readiness probe for scripts/kafka (stdlib only).

Sends one Kafka Metadata request (v4, no topics) to HOST:PORT over a raw
socket and prints the registered (unfenced) broker ids that the broker
reports, comma separated, e.g. "1,2,3". Exit status 0 on a valid answer,
1 on any error (connection refused, timeout, short read, ...), with the
reason on stderr.

usage: ping.py [HOST:]PORT [TIMEOUT_SECONDS]
"""

import socket
import struct
import sys

API_METADATA = 3
API_VERSION = 4  # non-flexible; supported by every Kafka from 1.0 to 4.x
CORRELATION_ID = 0x666C6F6F  # "floo"
CLIENT_ID = b"floodgate-kafka-ping"


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError("truncated metadata response")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        if self.pos + n > len(self.data):
            raise ValueError("truncated metadata response")
        s = self.data[self.pos:self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return s


def metadata(host, port, timeout):
    body = struct.pack(">hhih", API_METADATA, API_VERSION, CORRELATION_ID, len(CLIENT_ID))
    body += CLIENT_ID
    body += struct.pack(">i?", 0, False)  # topics: empty array; allow_auto_topic_creation
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", recv_exact(sock, 4))
        if size < 4 or size > 64 << 20:
            raise ValueError("bad response size %d" % size)
        r = Reader(recv_exact(sock, size))
    if r.take(">i") != CORRELATION_ID:
        raise ValueError("correlation id mismatch")
    r.take(">i")  # throttle_time_ms
    brokers = []
    for _ in range(r.take(">i")):
        node_id = r.take(">i")
        r.string()  # host
        r.take(">i")  # port
        r.string()  # rack
        brokers.append(node_id)
    cluster_id = r.string()
    controller_id = r.take(">i")
    return sorted(brokers), cluster_id, controller_id


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    target = argv[1]
    host, _, port = target.rpartition(":")
    host = host or "127.0.0.1"
    timeout = float(argv[2]) if len(argv) > 2 else 2.0
    try:
        brokers, _, _ = metadata(host, int(port), timeout)
    except Exception as exc:  # noqa: BLE001 - any failure just means "not ready"
        print("ping %s:%s: %s" % (host, port, exc), file=sys.stderr)
        return 1
    print(",".join(str(b) for b in brokers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
