#!/usr/bin/python3
# Misbehaving and well-behaved NBD clients for nbd_lockout_test.sh. Each mode prints one JSON
# line with what it saw and exits 0 when it saw what a server with handshake limits must do.
#
#   flood ADDR COUNT READY_FILE   open COUNT sockets that never read or send; wait until the
#                                 server closed them all (EPOLLRDHUP), report their lifetimes
#   loris ADDR                    read the greeting, then send a long option one byte per 100 ms;
#                                 report when the server closed the connection
#   good URI WANT ROUNDS INTERVAL LIMIT
#                                 every INTERVAL s: libnbd connects, reads 64 KiB at a random
#                                 offset and compares it with WANT, and `nbdinfo --size` runs;
#                                 each must finish within LIMIT s
#   hold URI COUNT READY_FILE     COUNT libnbd clients in transmission until killed
#
# ADDR is unix:PATH or tcp:HOST:PORT.
import json
import os
import random
import resource
import select
import socket
import struct
import subprocess
import sys
import time


def connect(addr):
    kind, _, rest = addr.partition(":")
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(rest)
    else:
        host, _, port = rest.rpartition(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect((host, int(port)))
    return s


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            sys.exit(f"flood: RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def flood(addr, count, ready_file, max_wait=30.0):
    raise_nofile(count + 64)
    ep = select.epoll()
    opened = {}
    for _ in range(count):
        s = connect(addr)
        opened[s.fileno()] = (s, time.monotonic())
        ep.register(s.fileno(), select.EPOLLRDHUP)  # hang-ups only: nothing is ever read
    open(ready_file, "w").write("ready\n")
    lifetimes = []
    until = time.monotonic() + max_wait
    while opened and time.monotonic() < until:
        for fd, _ in ep.poll(0.2):
            s, t0 = opened.pop(fd)
            lifetimes.append(time.monotonic() - t0)
            ep.unregister(fd)
            s.close()
    lifetimes.sort()
    report = {"opened": count, "closed": len(lifetimes), "still_open": len(opened),
              "min_s": round(lifetimes[0], 3) if lifetimes else None,
              "max_s": round(lifetimes[-1], 3) if lifetimes else None}
    print(json.dumps(report))
    return not opened


def loris(addr):
    s = connect(addr)
    t0 = time.monotonic()
    greeting = b""
    while len(greeting) < 18:
        chunk = s.recv(18 - len(greeting))
        if not chunk:
            break
        greeting += chunk
    trickle = struct.pack(">I", 1)  # NBD_FLAG_C_FIXED_NEWSTYLE
    trickle += struct.pack(">QII", 0x49484156454F5054, 6, 4000) + b"x" * 4000  # NBD_OPT_INFO
    sent = 0
    closed = False
    while sent < len(trickle) and time.monotonic() - t0 < 30:
        try:
            s.send(trickle[sent:sent + 1])
        except OSError:  # EPIPE / ECONNRESET: the server is gone
            closed = True
            break
        sent += 1
        r, _, _ = select.select([s], [], [], 0.1)
        if r and not s.recv(4096, socket.MSG_DONTWAIT):
            closed = True
            break
    print(json.dumps({"greeting": len(greeting), "sent": sent, "closed": closed,
                      "lifetime_s": round(time.monotonic() - t0, 3)}))
    return closed


def good(uri, want_path, rounds, interval, limit):
    import nbd
    want = open(want_path, "rb").read()
    rng = random.Random(7)
    worst = 0.0
    failures = []
    start = time.monotonic()
    for i in range(rounds):
        t0 = time.monotonic()
        try:
            h = nbd.NBD()
            h.connect_uri(uri)
            off = rng.randrange(0, (len(want) - 65536) // 512) * 512
            if h.pread(65536, off) != want[off:off + 65536]:
                failures.append(f"round {i}: wrong bytes at {off}")
            h.shutdown()
            size = subprocess.run(["nbdinfo", "--size", uri], capture_output=True, text=True, timeout=limit)
            if size.returncode != 0 or int(size.stdout) != len(want):
                failures.append(f"round {i}: nbdinfo --size: {size.stdout.strip()} {size.stderr.strip()}")
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failures.append(f"round {i}: {e!r}")
        took = time.monotonic() - t0
        worst = max(worst, took)
        if took > limit:
            failures.append(f"round {i}: took {took:.2f} s > {limit} s")
        time.sleep(max(0.0, start + (i + 1) * interval - time.monotonic()))
    print(json.dumps({"rounds": rounds, "worst_s": round(worst, 3), "failures": failures}))
    return not failures


def hold(uri, count, ready_file):
    import nbd
    handles = []
    for _ in range(count):
        h = nbd.NBD()
        h.connect_uri(uri)
        handles.append(h)
    open(ready_file, "w").write("ready\n")
    while True:
        time.sleep(1)


def main(argv):
    mode = argv[1]
    if mode == "flood":
        return flood(argv[2], int(argv[3]), argv[4])
    if mode == "loris":
        return loris(argv[2])
    if mode == "good":
        return good(argv[2], argv[3], int(argv[4]), float(argv[5]), float(argv[6]))
    if mode == "hold":
        return hold(argv[2], int(argv[3]), argv[4])
    sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv) else 1)
