#!/usr/bin/env python3
"""Classic receiving server: a test peer for ftx.

Mirrors the classic Python socket tutorial's server, byte for byte:

    accept -> send b"welcome to conair" (17 bytes)
           -> recv(1024) the size: ASCII decimal digits, no terminator
           -> send b"ko"
           -> recv(1024) until `size` bytes have arrived, write them to the file
           -> close

Usage: classic_server.py OUTPUT_PATH [--host 127.0.0.1] [--port 0] [--timeout 30]

stdout gets exactly two lines: "listening on PORT" once bound (flushed), and
"received N bytes" after a complete transfer.  Errors go to stderr, exit 1.
Like the tutorial, whatever arrives is written to OUTPUT_PATH even when the
peer closes early; that case still exits 1.
"""
import argparse
import socket
import sys

GREETING = b"welcome to conair"
ACK = b"ko"


def fail(message):
    print(f"classic_server: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description="Classic tutorial receiver (ftx test peer).")
    parser.add_argument("output")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait on accept/recv before giving up (0 = forever)")
    args = parser.parse_args()
    timeout = args.timeout or None

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((args.host, args.port))
    s.listen(1)
    s.settimeout(timeout)
    print(f"listening on {s.getsockname()[1]}", flush=True)

    try:
        conn, _addr = s.accept()
    except socket.timeout:
        fail("timed out waiting for a connection")
    s.close()
    conn.settimeout(timeout)

    try:
        conn.sendall(GREETING)
        data = conn.recv(1024)  # the client sends the size in one sendall, then waits
        if not data:
            fail("connection closed before the size arrived")
        if not data.isdigit():
            fail(f"malformed size {data[:40]!r}")
        size = int(data)
        conn.sendall(ACK)

        received = 0
        with open(args.output, "wb") as f:
            while received < size:
                data = conn.recv(min(1024, size - received))
                if not data:
                    break
                f.write(data)
                received += len(data)
    except socket.timeout:
        fail("timed out")
    except OSError as e:
        fail(str(e))
    finally:
        conn.close()

    if received < size:
        fail(f"connection closed after {received} of {size} bytes")
    print(f"received {received} bytes", flush=True)


if __name__ == "__main__":
    main()
