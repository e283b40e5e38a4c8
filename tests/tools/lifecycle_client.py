#!/usr/bin/python3
"""NBD load and check client of the lifecycle tests (tests/lifecycle_nbd_test.sh).

  write URI MODEL --seed N [--region A:B] [--stop-file F] [--ready-file F] [--crash --state S]
      Writes seeded data (4 KiB-aligned runs and unaligned runs of 1..20000 bytes, some with FUA)
      into [A, B) of the export, with a flush every few writes, until F exists (then flushes and
      exits 0). Every write is read back at once, and random ranges of the region are read and
      compared with what the client knows, so reads during a snapshot/merge/replace swap are
      checked too. MODEL is a flat file of the device: the bytes the client knows are there.
        default:  every acknowledged write goes into MODEL (the server must not go away; any NBD
                  error exits 1).
        --crash:  only durable writes go into MODEL: a write acknowledged with FUA, or one
                  acknowledged before a flush that was acknowledged. When the connection breaks
                  (the server was killed), the writes not yet durable and the one in flight are
                  added to S's "uncertain" ranges (their bytes may be old or new) and the client
                  exits 0 with {"crashed": true}. Uncertain ranges that a later durable write
                  covers are certain again.
      --ready-file is created after the first acknowledged flush. Prints one JSON line of counts.

  verify URI MODEL [--state S] [--adopt]
      Reads the whole export and compares it with MODEL byte for byte, except S's uncertain
      ranges. Exit 1 naming the first differing offset. --adopt then flushes and takes the bytes
      the export holds in the uncertain ranges into MODEL (they came from the files the restarted
      server opened), so that the next round checks every byte again.

  kill-when PID DIR EVENT [--max-delay-ms N] [--timeout S] [--ready-file F]
      The crash loop's aimed kill: polls DIR (every 0.2 ms) until EVENT, waits a random
      0..N ms, then sends SIGKILL to PID; after S seconds without EVENT it kills anyway. F is
      created once it polls. Prints
      {"event": seen?, "delay_ms": ...}. EVENT is
        pending  DIR/config.v1.json holds ovbdPendingSnapshot (snapshot steps 2..5)
        tmp      an ovbd-merged-*.ovbd-tmp file exists (merge step 1: the output being written)
        merged   an ovbd-merged-* file the manifest does not name exists (merge steps 2..3)

Exit: 0 ok, 1 a check failed or an unexpected error (the reason on stderr).
"""
import argparse
import json
import os
import random
import signal
import sys
import time

import nbd

CHUNK = 4 << 20


class Ranges:
    """Disjoint, sorted half-open byte ranges."""

    def __init__(self, pairs=()):
        self.r = sorted([a, b] for a, b in pairs if a < b)

    def add(self, a, b):
        if a >= b:
            return
        out = []
        for x, y in self.r:
            if y < a or x > b:
                out.append([x, y])
            else:
                a, b = min(a, x), max(b, y)
        out.append([a, b])
        self.r = sorted(out)

    def subtract(self, a, b):
        out = []
        for x, y in self.r:
            if y <= a or x >= b:
                out.append([x, y])
                continue
            if x < a:
                out.append([x, a])
            if y > b:
                out.append([b, y])
        self.r = out

    def intersects(self, a, b):
        return any(x < b and a < y for x, y in self.r)

    def within(self, a, b):
        """The parts of the ranges inside [a, b)."""
        return [(max(x, a), min(y, b)) for x, y in self.r if x < b and a < y]


def load_state(path):
    if path and os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"uncertain": []}


def save_state(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def cmd_write(args):
    h = connect(args.uri)
    size = h.get_size()
    lo, hi = (0, size) if not args.region else map(int, args.region.split(":"))
    assert 0 <= lo < hi <= size and hi - lo >= 1 << 20, f"bad region {lo}:{hi} of {size}"
    state = load_state(args.state)
    uncertain = Ranges(state["uncertain"])
    model = os.open(args.model, os.O_RDWR)
    rng = random.Random(args.seed)
    pending = []   # (offset, data, fua) acknowledged since the last flush, in order
    inflight = None
    counts = {"writes": 0, "fua": 0, "unaligned": 0, "flushes": 0, "bytes": 0, "reads_checked": 0}

    def durable(off, data):
        os.pwrite(model, data, off)
        uncertain.subtract(off, off + len(data))

    def known(off, n):
        """What the client knows [off, off + n) holds: MODEL with the pending writes on top."""
        view = bytearray(os.pread(model, n, off))
        for p_off, p_data, _ in pending:
            a, b = max(off, p_off), min(off + n, p_off + len(p_data))
            if a < b:
                view[a - off:b - off] = p_data[a - p_off:b - p_off]
        return bytes(view)

    def flush():
        h.flush()
        for p_off, p_data, _ in pending:
            durable(p_off, p_data)
        pending.clear()
        counts["flushes"] += 1
        if args.ready_file and counts["flushes"] == 1:
            open(args.ready_file, "w").close()

    crashed = False
    try:
        i = 0
        while not (args.stop_file and os.path.exists(args.stop_file)):
            if rng.random() < 0.6:
                off = lo + rng.randrange((hi - lo) // 4096 - 8) * 4096
                n = rng.randint(1, 8) * 4096
            else:
                off = rng.randrange(lo, hi - 1)
                n = min(rng.randint(1, 20000), hi - off)
                counts["unaligned"] += 1
            data = rng.randbytes(n)
            fua = rng.random() < 0.2
            inflight = (off, data)
            h.pwrite(data, off, nbd.CMD_FLAG_FUA if fua else 0)
            inflight = None
            counts["writes"] += 1
            counts["fua"] += fua
            counts["bytes"] += n
            if not args.crash:
                durable(off, data)
            else:
                pending.append((off, data, fua))
                if fua:
                    durable(off, data)  # applied again, in order, at the next flush
            if rng.random() < 0.3:
                got = h.pread(n, off)
                if got != data:
                    raise AssertionError(f"write of {n} bytes at {off} read back differently")
            if rng.random() < 0.15:
                n = rng.randint(1, 65536)
                off = rng.randrange(lo, hi - n)
                if not uncertain.intersects(off, off + n):
                    got = h.pread(n, off)
                    want = known(off, n)
                    if got != want:
                        at = next(k for k in range(n) if got[k] != want[k])
                        raise AssertionError(f"read of {n} bytes at {off} differs at byte {off + at}")
                    counts["reads_checked"] += 1
            if i % 8 == 7:
                flush()
            i += 1
            if args.pause_ms:
                time.sleep(args.pause_ms / 1000)
        flush()
        h.shutdown()
    except nbd.Error as e:
        if not args.crash:
            print(f"lifecycle_client: NBD error after {counts['writes']} writes: {e}", file=sys.stderr)
            return 1
        crashed = True
        lost = [(o, d) for o, d, fua in pending if not fua] + ([inflight] if inflight else [])
        for o, d in lost:
            uncertain.add(o, o + len(d))
    os.close(model)
    if args.state:
        state["uncertain"] = uncertain.r
        save_state(args.state, state)
    counts["crashed"] = crashed
    print(json.dumps(counts))
    return 0


def cmd_verify(args):
    h = connect(args.uri)
    size = h.get_size()
    msize = os.path.getsize(args.model)
    if size != msize:
        print(f"verify: the export has {size} bytes, the model {msize}", file=sys.stderr)
        return 1
    state = load_state(args.state)
    uncertain = Ranges(state["uncertain"])
    fd = os.open(args.model, os.O_RDWR)
    adopted = 0
    for at in range(0, size, CHUNK):
        n = min(CHUNK, size - at)
        got = h.pread(n, at)
        want = bytearray(os.pread(fd, n, at))
        for a, b in uncertain.within(at, at + n):
            want[a - at:b - at] = got[a - at:b - at]
        if got != want:
            k = next(k for k in range(n) if got[k] != want[k])
            print(f"verify: byte {at + k} is {got[k]:#04x}, the model has {want[k]:#04x} "
                  f"({len(uncertain.r)} uncertain ranges excluded)", file=sys.stderr)
            return 1
        if args.adopt:
            for a, b in uncertain.within(at, at + n):
                os.pwrite(fd, got[a - at:b - at], a)
                adopted += b - a
    if args.adopt:
        h.flush()
        state["uncertain"] = []
        save_state(args.state, state)
    h.shutdown()
    os.close(fd)
    print(json.dumps({"size": size, "uncertain_ranges": len(uncertain.r), "adopted_bytes": adopted}))
    return 0


def event_seen(directory, event):
    manifest = os.path.join(directory, "config.v1.json")
    if event == "pending":
        try:
            with open(manifest) as f:
                return "ovbdPendingSnapshot" in f.read()
        except OSError:
            return False
    names = [n for n in os.listdir(directory) if n.startswith("ovbd-merged-")]
    if event == "tmp":
        return any(n.endswith(".ovbd-tmp") for n in names)
    try:
        with open(manifest) as f:
            named = {os.path.basename(l["file"]) for l in json.load(f).get("lowers", [])}
    except (OSError, ValueError):
        return False
    return any(not n.endswith(".ovbd-tmp") and n not in named for n in names)


def cmd_kill_when(args):
    deadline = time.monotonic() + args.timeout
    seen = False
    if args.ready_file:
        open(args.ready_file, "w").close()
    while time.monotonic() < deadline:
        if event_seen(args.dir, args.event):
            seen = True
            break
        time.sleep(0.0002)
    delay = random.uniform(0, args.max_delay_ms) if seen else 0
    time.sleep(delay / 1000)
    try:
        os.kill(args.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    print(json.dumps({"event": seen, "delay_ms": round(delay, 2)}))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("uri")
    w.add_argument("model")
    w.add_argument("--seed", type=int, required=True)
    w.add_argument("--region")
    w.add_argument("--stop-file")
    w.add_argument("--ready-file")
    w.add_argument("--crash", action="store_true")
    w.add_argument("--state")
    w.add_argument("--pause-ms", type=float, default=0)
    v = sub.add_parser("verify")
    v.add_argument("uri")
    v.add_argument("model")
    v.add_argument("--state")
    v.add_argument("--adopt", action="store_true")
    k = sub.add_parser("kill-when")
    k.add_argument("pid", type=int)
    k.add_argument("dir")
    k.add_argument("event", choices=["pending", "tmp", "merged"])
    k.add_argument("--max-delay-ms", type=float, default=2)
    k.add_argument("--timeout", type=float, default=5)
    k.add_argument("--ready-file")
    args = p.parse_args()
    if (getattr(args, "crash", False) or getattr(args, "adopt", False)) and not args.state:
        p.error("--crash and --adopt need --state")
    try:
        return {"write": cmd_write, "verify": cmd_verify, "kill-when": cmd_kill_when}[args.cmd](args)
    except (AssertionError, nbd.Error, OSError) as e:
        print(f"lifecycle_client {args.cmd}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
