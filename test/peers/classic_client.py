#!/usr/bin/env python3
"""Classic sending client: a test peer for ftx.

Mirrors the classic Python socket tutorial's client, byte for byte:

    connect -> recv(1024) the greeting and print it
            -> sendall the file size as ASCII decimal digits (no terminator)
            -> recv(1024) the ack
            -> sendall the file's bytes
            -> close at once, without waiting for anything

Usage: classic_client.py FILE HOST PORT [--split-size-at K] [--split-delay-ms 50] [--timeout 30]

--split-size-at K sends the size digits in two sends (the first K digits, a
pause of --split-delay-ms, then the rest, with TCP_NODELAY set) so that they
reach the peer as two TCP segments.  K must be between 1 and len(digits) - 1.

stdout gets one line: the greeting as received.  Exits 0 after sending and
closing; on errors (connection closed early, ack other than b"ko") prints a
message on stderr and exits 1.
"""
import argparse
import os
import socket
import sys
import time

ACK = b"ko"


def fail(message):
    print(f"classic_client: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description="Classic tutorial sender (ftx test peer).")
    parser.add_argument("file")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--split-size-at", type=int, metavar="K")
    parser.add_argument("--split-delay-ms", type=float, default=50.0)
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait on connect/recv before giving up (0 = forever)")
    args = parser.parse_args()

    digits = str(os.path.getsize(args.file)).encode("ascii")
    k = args.split_size_at
    if k is not None and not 1 <= k < len(digits):
        parser.error(f"--split-size-at {k} does not split the {len(digits)}-digit size {digits.decode()}")

    try:
        s = socket.create_connection((args.host, args.port), timeout=args.timeout or None)
        greeting = s.recv(1024)
        if not greeting:
            fail("connection closed before the greeting")
        print(greeting.decode("utf-8", "replace"), flush=True)

        if k is None:
            s.sendall(digits)
        else:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(digits[:k])
            time.sleep(args.split_delay_ms / 1000)
            s.sendall(digits[k:])

        ack = s.recv(1024)
        if ack != ACK:
            fail(f"expected ack b'ko', got {ack!r}")

        with open(args.file, "rb") as f:
            while True:
                data = f.read(1024)
                if not data:
                    break
                s.sendall(data)
        s.close()
    except socket.timeout:
        fail("timed out")
    except OSError as e:
        fail(str(e))


if __name__ == "__main__":
    main()
