#!/usr/bin/python3
"""lazy_ws.py - helpers of bench/lazy_bench.sh (run with /usr/bin/python3: needs python3-libnbd).

  make-layer --ovbd OVBD --size BYTES --writes N --seed S --uuid U --parent-uuid P DIR NAME
      An RW layer DIR/NAME.{data,index} (`ovbd create`) that receives N scattered writes
      (`ovbd write`, one process per write): 4 KiB aligned, log-uniform length 4 KiB..1 MiB, the
      same distribution as bench_make_chain's overlays, content "disk-like" per 4 KiB block
      (28% zeros, 46% text, 13% tables of small integers, 13% random; lz4 ~2x). Writes the list
      to DIR/NAME.writes ("OFFSET LENGTH" per line). Deterministic: depends only on the options.

  plan --map MAP.json --fraction F --seed S [--min B] [--max B] [--merge-gap B] [--writes W...]
      The start-up working set: extents of log-uniform length in [min, max] (4 KiB aligned), each
      starting at a random 4 KiB block of allocated data (MAP = `nbdinfo --map --json` of the
      image) and clipped to its "file" (a run of allocated extents with gaps < merge-gap, so a
      read may cover the zero blocks inside a file but does not run into a large hole), no two
      overlapping, until they add up to F of the device; the last one is trimmed to hit F
      exactly. Printed as "OFFSET LENGTH" lines, in the (random) order they are read. With
      --writes (the overlays' write lists, bottom first), a JSON summary of the bytes by top layer
      goes to stderr.

  read --uri URI --ws WS [--threads T] [--ready FILE] [--repeat R] [--timeout S]
      Reads the working set with T concurrent readers (one libnbd connection each; extents
      handed out in list order from a shared cursor; one pread per extent). With --ready, first
      waits until FILE holds "serving " (the ready line of `ovbd serve`). Prints one JSON line:
      {"ready_ns", "connected_ns", "end_ns", "bytes", "sha256", "runs_s"}: CLOCK_REALTIME ns at
      ready / all connected / last byte of the first run, and the seconds of each of R runs (a
      run = every thread reading the whole set; all connections are made before the first run).
      sha256 is over the per-extent sha256s in list order (independent of thread timing).
"""

import argparse
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import threading
import time

BLOCK = 4096


# ---- disk-like content ----------------------------------------------------------------------

def _vocabulary():
    r = random.Random(42)
    return [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9)))
            for _ in range(512)]


VOCAB = _vocabulary()


def disk_like_block(seed, block):
    r = random.Random(seed * 1000003 + block)
    kind = r.randrange(100)
    if kind < 28:
        return bytes(BLOCK)
    if kind < 74:  # text: Zipf-ish words, lines of ~60-80 chars
        out = bytearray()
        line = 0
        while len(out) < BLOCK:
            x = r.getrandbits(32)
            word = VOCAB[(x >> 8) % 48] if (x & 0xFF) < 208 else VOCAB[(x >> 8) % 512]
            out += word
            line += len(word) + 1
            if line > 60 + (x >> 27) % 20:
                out += b"\n"
                line = 0
            else:
                out += b"," if (x >> 24) & 7 == 0 else b" "
        return bytes(out[:BLOCK])
    if kind < 87:  # 32-byte records: id, mode, small field, uid, random; zero padding
        out = bytearray(BLOCK)
        base = block * 128
        for rec in range(BLOCK // 32):
            fields = ((base + rec) & 0xFFFFFFFF, 0x81A4, r.randrange(4096), 1000, r.getrandbits(32))
            out[rec * 32:rec * 32 + 20] = b"".join(f.to_bytes(4, "little") for f in fields)
        return bytes(out)
    return r.randbytes(BLOCK)


def log_uniform_writes(rng, count, size):
    """bench_make_chain's overlay writes: 4 KiB aligned, 2^(8u) blocks (4 KiB..1 MiB)."""
    writes = []
    for _ in range(count):
        blocks = max(1, min(256, round(2.0 ** (8.0 * rng.random()))))
        length = blocks * BLOCK
        offset = rng.randrange((size - length) // BLOCK + 1) * BLOCK
        writes.append((offset, length))
    return writes


def cmd_make_layer(a):
    data = os.path.join(a.dir, a.name + ".data")
    index = os.path.join(a.dir, a.name + ".index")
    for p in (data, index):
        if os.path.exists(p):
            os.remove(p)
    subprocess.run([a.ovbd, "create", "--size", str(a.size), "--uuid", a.uuid, "--parent-uuid",
                    a.parent_uuid, data, index], check=True)
    writes = log_uniform_writes(random.Random(a.seed), a.writes, a.size)
    for offset, length in writes:
        payload = b"".join(disk_like_block(a.seed, b) for b in range(offset // BLOCK, (offset + length) // BLOCK))
        subprocess.run([a.ovbd, "write", data, index, "--offset", str(offset), "-"], input=payload, check=True)
    with open(os.path.join(a.dir, a.name + ".writes"), "w") as f:
        for offset, length in writes:
            f.write(f"{offset} {length}\n")


# ---- working set ----------------------------------------------------------------------------

def data_runs(extents, merge_gap):
    """Allocated runs from nbdinfo's map (type bit 0 = hole), gaps < merge_gap merged."""
    runs = []
    for e in extents:
        if e["type"] & 1:
            continue
        start, end = e["offset"], e["offset"] + e["length"]
        if runs and start - runs[-1][1] < merge_gap:
            runs[-1][1] = end
        else:
            runs.append([start, end])
    return runs


def top_layer_bytes(ws, write_lists):
    """Bytes of the working set per top layer: the last overlay whose writes cover a block."""
    top = {}
    for layer, path in enumerate(write_lists, start=1):
        with open(path) as f:
            for line in f:
                off, length = map(int, line.split())
                for b in range(off // BLOCK, (off + length) // BLOCK):
                    top[b] = layer
    out = [0] * (len(write_lists) + 1)
    for off, length in ws:
        for b in range(off // BLOCK, (off + length) // BLOCK):
            out[top.get(b, 0)] += BLOCK
    return out


def cmd_plan(a):
    with open(a.map) as f:
        extents = json.load(f)
    size = max(e["offset"] + e["length"] for e in extents)
    target = int(size * a.fraction) // BLOCK * BLOCK
    runs = data_runs(extents, a.merge_gap)
    total_blocks = sum((e - s) // BLOCK for s, e in runs)
    rng = random.Random(a.seed)
    taken = []  # (start, end), unsorted; overlap check is linear: a few hundred extents
    chosen = []
    got = 0
    lo, hi = math.log2(a.min // BLOCK), math.log2(a.max // BLOCK)
    while got < target:
        pick = rng.randrange(total_blocks)
        for s, e in runs:
            n = (e - s) // BLOCK
            if pick < n:
                start = s + pick * BLOCK
                run_end = e
                break
            pick -= n
        length = round(2.0 ** rng.uniform(lo, hi)) * BLOCK
        end = min(start + length, run_end, start + (target - got))
        if end <= start or any(start < te and ts < end for ts, te in taken):
            continue
        taken.append((start, end))
        chosen.append((start, end - start))
        got += end - start
    for off, length in chosen:
        print(off, length)
    if a.writes:
        by_layer = top_layer_bytes(chosen, a.writes)
        print(json.dumps({"extents": len(chosen), "bytes": got, "device": size,
                          "by_top_layer": by_layer}), file=sys.stderr)


# ---- reader ---------------------------------------------------------------------------------

def wait_ready(path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                if b"serving " in f.read():
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    sys.exit(f"lazy_ws.py: no ready line in {path} after {timeout} s")


def cmd_read(a):
    import nbd  # python3-libnbd: only this subcommand needs it
    with open(a.ws) as f:
        ws = [tuple(map(int, line.split())) for line in f if line.strip()]
    if a.ready:
        wait_ready(a.ready, a.timeout)
    ready_ns = time.time_ns()
    handles = [None] * a.threads
    errors = []

    def connect(i):
        try:
            h = nbd.NBD()
            h.connect_uri(a.uri)
            handles[i] = h
        except Exception as e:  # noqa: BLE001 - reported and fatal
            errors.append(f"connect: {e}")

    ts = [threading.Thread(target=connect, args=(i,)) for i in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        sys.exit("lazy_ws.py: " + errors[0])
    connected_ns = time.time_ns()
    digests = [None] * len(ws)
    runs = []
    end_ns = 0
    for run in range(a.repeat):
        cursor = iter(range(len(ws)))
        lock = threading.Lock()

        def worker(h):
            try:
                while True:
                    with lock:
                        i = next(cursor, None)
                    if i is None:
                        return
                    off, length = ws[i]
                    data = h.pread(length, off)
                    digests[i] = hashlib.sha256(data).digest()
            except Exception as e:  # noqa: BLE001
                errors.append(f"read: {e}")

        t0 = time.monotonic()
        ts = [threading.Thread(target=worker, args=(h,)) for h in handles]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        runs.append(round(time.monotonic() - t0, 6))
        if run == 0:
            end_ns = time.time_ns()
        if errors:
            sys.exit("lazy_ws.py: " + errors[0])
    for h in handles:
        h.shutdown()
    print(json.dumps({"ready_ns": ready_ns, "connected_ns": connected_ns, "end_ns": end_ns,
                      "bytes": sum(n for _, n in ws), "extents": len(ws),
                      "sha256": hashlib.sha256(b"".join(digests)).hexdigest(), "runs_s": runs}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-layer")
    m.add_argument("--ovbd", required=True)
    m.add_argument("--size", type=int, required=True)
    m.add_argument("--writes", type=int, required=True)
    m.add_argument("--seed", type=int, required=True)
    m.add_argument("--uuid", required=True)
    m.add_argument("--parent-uuid", required=True)
    m.add_argument("dir")
    m.add_argument("name")
    p = sub.add_parser("plan")
    p.add_argument("--map", required=True)
    p.add_argument("--fraction", type=float, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--min", type=int, default=64 << 10)
    p.add_argument("--max", type=int, default=1 << 20)
    p.add_argument("--merge-gap", type=int, default=64 << 10)
    p.add_argument("--writes", nargs="*")
    r = sub.add_parser("read")
    r.add_argument("--uri", required=True)
    r.add_argument("--ws", required=True)
    r.add_argument("--threads", type=int, default=4)
    r.add_argument("--ready")
    r.add_argument("--repeat", type=int, default=1)
    r.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    {"make-layer": cmd_make_layer, "plan": cmd_plan, "read": cmd_read}[a.cmd](a)


if __name__ == "__main__":
    main()
