#!/usr/bin/python3
"""Independent OverlayBD reader that follows the REFERENCE implementation's rules.

Written only from the format notes (shared/format/overlaybd.md), not from ovbd's sources,
to check that ovbd-written layers are readable the way overlaybd reads them, including the
reference's quirks and limits:

  * tar wrapping: "ustar" magic + version "00" + header checksum; payload at 1536 with the
    size from the pax "size=" record, or at 512 with the ustar size when there is no pax header;
  * ZFile: header at 0 (magic, HEADER bit, raw-CRC32C digest when CALC_DIGEST), the header's
    fields when HEADER_OVERWRITE is set, else the trailer at EOF-512; index_size cap; jump table
    of per-block on-disk sizes (incl. the 4 CRC bytes) and its CRC; per-block CRC (seed 100007)
    when verify=1; LZ4 raw blocks / zstd frames;
  * the reference's read limit: a block entry larger than 64 KiB (MAX_READ_SIZE) cannot be read
    by overlaybd -> "not readable by the reference" (exit 3);
  * LSMT read-only blobs: header/trailer checks, index (padding dropped, tags reset),
    sorted/non-overlapping and moffset range checks; a stack is merged bottom-first (upper wins,
    zeroed segments hide lower layers, holes read as zeros).

Usage:
  reference_reader.py [--strict] [--ignore-read-limit] cat LAYER... > device.img   (bottom first)
  reference_reader.py [--strict] [--ignore-read-limit] zfile-decompress FILE > out
  reference_reader.py [--strict] info FILE     (one line: tar/ZFile parameters as the reference sees them)

  --strict             also fail (exit 1) on things overlaybd tolerates but no correct writer
                       produces (bad trailer digest, missing CALC_DIGEST, inconsistent sizes...)
  --ignore-read-limit  report the 64 KiB read-limit violations on stderr but read anyway
                       (exit 3 at the end, after writing the output)

Exit status: 0 ok, 1 format error, 2 usage, 3 valid but beyond the reference reader's limits.
Needs Debian's python3-lz4 and python3-zstandard (run with /usr/bin/python3).
"""

import struct
import sys

# ------------------------------------------------------------------------------------------------
# Errors and options


class FormatError(Exception):
    """The file breaks the format rules as the reference applies them (exit 1)."""


class BeyondReference(Exception):
    """Valid, but overlaybd's reader would refuse it (exit 3)."""


class Opts:
    strict = False
    ignore_read_limit = False
    beyond = []  # messages of read-limit violations tolerated with --ignore-read-limit


def warn(msg):
    """Something overlaybd tolerates; an error with --strict."""
    if Opts.strict:
        raise FormatError(msg + " (tolerated by overlaybd; rejected with --strict)")
    sys.stderr.write("reference_reader: warning: %s\n" % msg)


def beyond(msg):
    if Opts.ignore_read_limit:
        if not Opts.beyond:
            sys.stderr.write("reference_reader: beyond the reference's limits (reading anyway): %s\n" % msg)
        Opts.beyond.append(msg)
        return
    raise BeyondReference(msg)


# ------------------------------------------------------------------------------------------------
# CRC32C as overlaybd computes it: reflected Castagnoli 0x82F63B78, no pre/post inversion.


def _make_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _make_table()


def crc32c_raw(data, seed=0):
    t = _CRC_TABLE
    crc = seed
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


BLOCK_CRC_SEED = 100007  # NOI_WELL_KNOWN_PRIME

# Self-check values from the notes (§0).
assert crc32c_raw(b"123456789") == 0x58E3FA20
assert crc32c_raw(b"123456789", BLOCK_CRC_SEED) == 0x3C9BD4E0
assert crc32c_raw(b"") == 0


# ------------------------------------------------------------------------------------------------
# Tar wrapper (§6)


def _tar_octal(field, what):
    s = bytes(field)
    if s and s[0] & 0x80:  # base-256 (GNU) encoding
        v = int.from_bytes(s, "big") & ~(0x80 << (8 * (len(s) - 1)))
        return v
    s = s.split(b"\0", 1)[0].strip(b" ")
    if not s:
        return 0
    try:
        return int(s, 8)
    except ValueError:
        raise FormatError("tar: bad octal %s field %r" % (what, bytes(field)))


def _tar_checksum_ok(hdr):
    stored = _tar_octal(hdr[148:156], "checksum")
    unsigned = sum(hdr[:148]) + sum(hdr[156:512]) + 8 * 0x20
    signed = unsigned - 2 * sum(b for b in hdr[:148] if b & 0x80) - 2 * sum(b for b in hdr[156:512] if b & 0x80)
    return stored in (unsigned, signed)


def is_tar(data):
    if len(data) < 512:
        return False
    hdr = data[:512]
    return hdr[257:262] == b"ustar" and hdr[263:265] == b"00" and _tar_checksum_ok(hdr)


def tar_unwrap(data):
    """Payload of a one-member tar, located the way overlaybd does."""
    hdr = data[:512]
    typeflag = hdr[156:157]
    if typeflag == b"x":
        pax_len = _tar_octal(hdr[124:136], "size")
        if pax_len > 512:
            raise BeyondReference("tar: pax data of %d bytes; overlaybd expects the payload at 1536" % pax_len)
        if len(data) < 1536:
            raise FormatError("tar: truncated pax header")
        size = None
        pos, rec = 0, bytes(data[512:512 + pax_len])
        while pos < len(rec):
            if rec[pos] == 0:
                break
            sp = rec.find(b" ", pos)
            if sp < 0:
                raise FormatError("tar: bad pax record")
            try:
                n = int(rec[pos:sp])
            except ValueError:
                raise FormatError("tar: bad pax record length")
            if n <= sp - pos or pos + n > len(rec):
                raise FormatError("tar: bad pax record length")
            kv = rec[sp + 1:pos + n]
            if not kv.endswith(b"\n") or b"=" not in kv:
                raise FormatError("tar: bad pax record")
            k, v = kv[:-1].split(b"=", 1)
            if k == b"size":
                try:
                    size = int(v)
                except ValueError:
                    raise FormatError("tar: bad pax size %r" % v)
            pos += n
        if size is None:
            raise FormatError("tar: pax header without a size= record")
        start = 1536
    else:
        size = _tar_octal(hdr[124:136], "size")
        start = 512
    if size < 0 or start + size > len(data):
        raise FormatError("tar: payload [%d, +%d) beyond the file (%d bytes)" % (start, size, len(data)))
    if Opts.strict and typeflag == b"x":
        h2 = data[1024:1536]
        if not is_tar(h2):
            warn("tar: no valid ustar header after the pax header")
    return memoryview(data)[start:start + size]


# ------------------------------------------------------------------------------------------------
# ZFile (§1)

ZF_MAGIC0 = b"ZFile\x00\x01\x00"
ZF_MAGIC1 = b"tuji.yyf@Alibaba"
ZF_HEADER, ZF_TYPE, ZF_SEALED, ZF_OVERWRITE, ZF_DIGEST = 1, 2, 4, 8, 16
MAX_ZFILE_INDEX_SIZE = 1000000000
MAX_READ_SIZE = 65536


def _zf_ht(buf):
    (size, digest, flags, index_offset, index_size, orig_size, index_crc, _r0,
     block_size, algo, level, use_dict, _pad, _res, dict_size, verify) = struct.unpack_from(
        "<IIQQQQIIIBBBBIIB", buf, 24)
    return dict(size=size, digest=digest, flags=flags, index_offset=index_offset,
                index_size=index_size, orig_size=orig_size, index_crc=index_crc,
                block_size=block_size, algo=algo, level=level, use_dict=use_dict,
                dict_size=dict_size, verify=verify)


def _zf_digest(buf):
    b = bytearray(buf[:512])
    b[28:32] = b"\0\0\0\0"
    return crc32c_raw(b)


def is_zfile(data):
    """overlaybd's is_zfile(): magic + HEADER bit; a present-but-wrong digest is an error."""
    if len(data) < 512:
        return False
    h = data[:512]
    if bytes(h[0:8]) != ZF_MAGIC0 or bytes(h[8:24]) != ZF_MAGIC1:
        return False
    ht = _zf_ht(h)
    if not ht["flags"] & ZF_HEADER:
        return False
    if ht["flags"] & ZF_DIGEST and _zf_digest(h) != ht["digest"]:
        raise FormatError("zfile: header digest mismatch (stored %#010x, computed %#010x)"
                          % (ht["digest"], _zf_digest(h)))
    return True


def zfile_load(data):
    """load_jump_table: returns (HeaderTrailer fields used, block offsets, number of blocks)."""
    n = len(data)
    if n < 1024:
        raise FormatError("zfile: file too small (%d bytes)" % n)
    if not is_zfile(data):
        raise FormatError("zfile: no ZFile header (magic/HEADER bit)")
    hdr = _zf_ht(data[:512])
    if not hdr["flags"] & ZF_DIGEST:
        warn("zfile: header has no CALC_DIGEST flag; digest not checked")
    trailer_offset = n - 512
    if hdr["flags"] & ZF_OVERWRITE:
        ht = hdr  # the reference does not read the trailer at all
        if Opts.strict:
            t = data[trailer_offset:]
            if bytes(t[0:8]) == ZF_MAGIC0 and bytes(t[8:24]) == ZF_MAGIC1:
                tt = _zf_ht(t)
                for k in ("index_offset", "index_size", "orig_size", "index_crc", "block_size", "algo", "verify"):
                    if tt[k] != hdr[k]:
                        warn("zfile: overwritten header and trailer disagree on %s (%d vs %d)" % (k, hdr[k], tt[k]))
    else:
        if not hdr["flags"] & ZF_TYPE:
            raise FormatError("zfile: header is not of TYPE data")
        t = data[trailer_offset:]
        if bytes(t[0:8]) != ZF_MAGIC0 or bytes(t[8:24]) != ZF_MAGIC1:
            raise FormatError("zfile: bad trailer magic")
        ht = _zf_ht(t)
        f = ht["flags"]
        if f & ZF_HEADER or not f & ZF_TYPE or not f & ZF_SEALED:
            raise FormatError("zfile: bad trailer flags %#x (need HEADER=0, TYPE=1, SEALED=1)" % f)
        if f & ZF_DIGEST:
            if _zf_digest(t) != ht["digest"]:
                warn("zfile: trailer digest mismatch (overlaybd does not check it)")
        else:
            warn("zfile: trailer has no CALC_DIGEST flag")

    index_offset, index_size = ht["index_offset"], ht["index_size"]
    if index_size > MAX_ZFILE_INDEX_SIZE:
        raise FormatError("zfile: index_size %d > %d" % (index_size, MAX_ZFILE_INDEX_SIZE))
    if index_offset > trailer_offset or index_size * 4 > trailer_offset - index_offset:
        raise FormatError("zfile: jump table [%d, +%d*4) does not fit before the trailer at %d"
                          % (index_offset, index_size, trailer_offset))
    if ht["size"] != 96:
        warn("zfile: HeaderTrailer size field %d != 96" % ht["size"])
    bs, algo, verify, dict_size = ht["block_size"], ht["algo"], ht["verify"], ht["dict_size"]
    if bs < 4096 or bs > 65536 or bs & (bs - 1):
        raise FormatError("zfile: block_size %d (must be a power of two in 4K..64K)" % bs)
    if algo not in (1, 2):
        raise FormatError("zfile: algorithm %d (1 = LZ4, 2 = ZSTD; MINI_LZO not implemented)" % algo)
    if dict_size != 0 or ht["use_dict"]:
        raise FormatError("zfile: dictionary (dict_size %d) not supported" % dict_size)
    if verify not in (0, 1):
        warn("zfile: verify field %d (expected 0 or 1)" % verify)

    table_bytes = bytes(data[index_offset:index_offset + 4 * index_size])
    if ht["flags"] & ZF_DIGEST:
        c = crc32c_raw(table_bytes)
        if c != ht["index_crc"]:
            raise FormatError("zfile: jump table CRC mismatch (stored %#010x, computed %#010x)" % (ht["index_crc"], c))
    table = struct.unpack("<%dI" % index_size, table_bytes)

    # JumpTable::build: entry sizes must be > 4 with CRC, > 0 without; uint16 partial sums per group.
    min_entry = 5 if verify else 1
    group = 65536 // bs
    offs = [512 + dict_size]
    part = 0
    for i, e in enumerate(table):
        if e < min_entry:
            raise FormatError("zfile: jump table entry %d is %d bytes (must be >= %d)" % (i, e, min_entry))
        if i % group == 0:
            part = 0
        else:
            part += table[i - 1]
            if part >= 65535:
                raise BeyondReference("zfile: partial sum %d >= 65535 in the jump table group of block %d "
                                      "(overlaybd fails with ERANGE)" % (part, i))
        offs.append(offs[-1] + e)

    orig = ht["orig_size"]
    nblocks = (orig + bs - 1) // bs
    if index_size < nblocks:
        raise FormatError("zfile: %d blocks in the jump table, %d needed for %d bytes" % (index_size, nblocks, orig))
    if index_size > nblocks:
        warn("zfile: %d jump table entries for %d blocks" % (index_size, nblocks))
    if offs[nblocks] > index_offset:
        raise FormatError("zfile: blocks end at %d, past the jump table at %d" % (offs[nblocks], index_offset))
    if offs[index_size] != index_offset:
        warn("zfile: blocks end at %d but the jump table starts at %d" % (offs[index_size], index_offset))
    return ht, offs, nblocks


def zfile_decompress(data):
    ht, offs, nblocks = zfile_load(data)
    bs, algo, verify, orig = ht["block_size"], ht["algo"], ht["verify"], ht["orig_size"]
    if algo == 1:
        import lz4.block

        def dec(buf, want):
            return lz4.block.decompress(buf, uncompressed_size=want)
    else:
        import zstandard
        zd = zstandard.ZstdDecompressor()

        def dec(buf, want):
            return zd.decompress(buf, max_output_size=want)

    out = bytearray(orig)
    mv = memoryview(data)
    for i in range(nblocks):
        start, end = offs[i], offs[i + 1]
        entry = end - start
        if entry > MAX_READ_SIZE:
            beyond("zfile: block %d has an on-disk entry of %d bytes > MAX_READ_SIZE %d; overlaybd cannot read it"
                   % (i, entry, MAX_READ_SIZE))
        blk = mv[start:end]
        if verify:
            comp = blk[:-4]
            stored = struct.unpack_from("<I", blk, entry - 4)[0]
            c = crc32c_raw(comp, BLOCK_CRC_SEED)
            if c != stored:
                raise FormatError("zfile: block %d CRC mismatch (stored %#010x, computed %#010x)" % (i, stored, c))
        else:
            comp = blk
        want = min(bs, orig - i * bs)
        try:
            raw = dec(bytes(comp), want)
        except Exception as e:  # lz4.block.LZ4BlockError, zstandard.ZstdError
            raise FormatError("zfile: block %d does not decompress: %s" % (i, e))
        if len(raw) != want:
            raise FormatError("zfile: block %d decompressed to %d bytes, expected %d" % (i, len(raw), want))
        out[i * bs:i * bs + want] = raw
    return out


# ------------------------------------------------------------------------------------------------
# LSMT read-only blob (§2)

LSMT_MAGIC0 = b"LSMT\x00\x01\x02\x00"
LSMT_MAGIC1 = bytes.fromhex("657e63d29444084ca2d2c8ec4fcfae8a")
HT_SPACE = 4096
LS_HEADER, LS_TYPE, LS_SEALED = 1, 2, 4
MAX_LSMT_RO_INDEX_SIZE = 1000000
INVALID_OFFSET = (1 << 50) - 1
MAX_STACK_LAYERS = 255


def _ls_ht(buf):
    size, flags, index_offset, index_size, vsize = struct.unpack_from("<IIQQQ", buf, 24)
    return dict(size=size, flags=flags, index_offset=index_offset, index_size=index_size, vsize=vsize)


def _ls_magic_ok(buf):
    return bytes(buf[0:8]) == LSMT_MAGIC0 and bytes(buf[8:24]) == LSMT_MAGIC1


def lsmt_open_ro(blob, name):
    """Returns (virtual_size, [(offset, length, moffset, zeroed)] in sectors, blob)."""
    n = len(blob)
    if n < 2 * HT_SPACE:
        raise FormatError("%s: too small for an LSMT blob (%d bytes)" % (name, n))
    if not _ls_magic_ok(blob[:HT_SPACE]):
        raise FormatError("%s: not an LSMT blob (bad header magic)" % name)
    h = _ls_ht(blob[:HT_SPACE])
    if not h["flags"] & LS_HEADER or not h["flags"] & LS_TYPE:
        raise FormatError("%s: bad LSMT header flags %#x (need HEADER and TYPE=data)" % (name, h["flags"]))
    trailer_offset = n - HT_SPACE
    t = blob[trailer_offset:]
    if not _ls_magic_ok(t):
        raise FormatError("%s: bad LSMT trailer magic" % name)
    tr = _ls_ht(t)
    f = tr["flags"]
    if f & LS_HEADER or not f & LS_TYPE or not f & LS_SEALED:
        raise FormatError("%s: bad LSMT trailer flags %#x (need HEADER=0, TYPE=1, SEALED=1)" % (name, f))
    if tr["index_size"] > MAX_LSMT_RO_INDEX_SIZE:
        raise FormatError("%s: index_size %d > %d" % (name, tr["index_size"], MAX_LSMT_RO_INDEX_SIZE))
    io, isz = tr["index_offset"], tr["index_size"]
    if io > trailer_offset or isz * 16 > trailer_offset - io:
        raise FormatError("%s: index [%d, +%d*16) does not fit before the trailer at %d" % (name, io, isz, trailer_offset))
    if Opts.strict:
        if io % 512:
            warn("%s: index_offset %d is not 512-aligned" % (name, io))
        if h["size"] != 390 or tr["size"] != 390:
            warn("%s: HeaderTrailer size field %d/%d != 390" % (name, h["size"], tr["size"]))

    entries = []
    mv = memoryview(blob)
    for k in range(isz):
        lo, hi = struct.unpack_from("<QQ", mv, io + 16 * k)
        off = lo & INVALID_OFFSET
        if off == INVALID_OFFSET:
            continue  # padding
        length = lo >> 50
        moff = hi & ((1 << 55) - 1)
        zeroed = (hi >> 55) & 1
        # tag (hi >> 56) is reset to 0 on load
        entries.append((off, length, moff, zeroed))

    # verify_mapping_order and verify_mapping_moffset
    begin, end = HT_SPACE // 512, io // 512
    prev_end = None
    for off, length, moff, zeroed in entries:
        if prev_end is not None and prev_end > off:
            raise FormatError("%s: index not sorted / overlapping at sector %d" % (name, off))
        prev_end = off + length
        if zeroed:
            if not (begin <= moff <= end):
                raise FormatError("%s: zeroed segment at sector %d has moffset %d outside [%d, %d]"
                                  % (name, off, moff, begin, end))
        else:
            if not (begin <= moff < end and moff + length <= end):
                raise FormatError("%s: data segment [%d, +%d) has moffset %d outside [%d, %d)"
                                  % (name, off, length, moff, begin, end))
        if length == 0:
            warn("%s: zero-length segment at sector %d" % (name, off))
    return tr["vsize"], entries, blob


def open_layer(path):
    with open(path, "rb") as fp:
        data = fp.read()
    if is_tar(data):
        data = tar_unwrap(data)
    if is_zfile(data):
        data = zfile_decompress(data)
    return lsmt_open_ro(data, path)


def cat(paths):
    if not paths:
        raise FormatError("no layers")
    if len(paths) > MAX_STACK_LAYERS:
        raise BeyondReference("%d layers > MAX_STACK_LAYERS %d" % (len(paths), MAX_STACK_LAYERS))
    layers = [open_layer(p) for p in paths]  # bottom first
    vsize = 0
    for vs, _, _ in reversed(layers):
        if vs > 0:
            vsize = vs
            break
    if vsize % 512:
        warn("virtual size %d is not a multiple of 512" % vsize)
    dev = bytearray(vsize)
    # Painting bottom-up gives the same result as overlaybd's recursive merge: the upper
    # layer wins, zeroed segments hide the layers below, uncovered ranges stay zero.
    for (_, entries, blob), path in zip(layers, paths):
        for off, length, moff, zeroed in entries:
            a, b = off * 512, (off + length) * 512
            if b > vsize:
                warn("%s: segment [%d, %d) extends past the virtual size %d" % (path, a, b, vsize))
                b = vsize
                if a >= b:
                    continue
            if zeroed:
                dev[a:b] = bytes(b - a)
            else:
                m = moff * 512
                dev[a:b] = blob[m:m + (b - a)]
    return dev


def info(path):
    """One line describing how the reference sees FILE (tar / ZFile parameters)."""
    with open(path, "rb") as fp:
        data = fp.read()
    words = []
    if is_tar(data):
        data = tar_unwrap(data)
        words.append("tar=1")
    else:
        words.append("tar=0")
    if is_zfile(data):
        hdr = _zf_ht(data[:512])
        ht, offs, nblocks = zfile_load(data)
        entries = [offs[i + 1] - offs[i] for i in range(nblocks)]
        words += ["zfile=1", "header_overwrite=%d" % (1 if hdr["flags"] & ZF_OVERWRITE else 0),
                  "algo=%s" % {1: "lz4", 2: "zstd"}[ht["algo"]], "block_size=%d" % ht["block_size"],
                  "verify=%d" % ht["verify"], "blocks=%d" % nblocks,
                  "max_entry=%d" % (max(entries) if entries else 0), "size=%d" % ht["orig_size"]]
    else:
        words += ["zfile=0", "size=%d" % len(data)]
    return (" ".join(words) + "\n").encode()


def decompress_file(path):
    with open(path, "rb") as fp:
        data = fp.read()
    if is_tar(data):
        data = tar_unwrap(data)
    return zfile_decompress(data)


# ------------------------------------------------------------------------------------------------


def main(argv):
    args = list(argv)
    while args and args[0].startswith("--"):
        a = args.pop(0)
        if a == "--strict":
            Opts.strict = True
        elif a == "--ignore-read-limit":
            Opts.ignore_read_limit = True
        else:
            sys.stderr.write("reference_reader: unknown option %s\n" % a)
            return 2
    if len(args) < 2 or args[0] not in ("cat", "zfile-decompress", "info") or (args[0] != "cat" and len(args) != 2):
        sys.stderr.write(__doc__)
        return 2
    try:
        if args[0] == "cat":
            out = cat(args[1:])
        elif args[0] == "info":
            out = info(args[1])
        else:
            out = decompress_file(args[1])
    except BeyondReference as e:
        sys.stderr.write("reference_reader: not readable by the reference: %s\n" % e)
        return 3
    except FormatError as e:
        sys.stderr.write("reference_reader: format error: %s\n" % e)
        return 1
    except OSError as e:
        sys.stderr.write("reference_reader: %s\n" % e)
        return 1
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    if Opts.beyond:
        sys.stderr.write("reference_reader: not readable by the reference: %d block(s) over MAX_READ_SIZE\n"
                         % len(Opts.beyond))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
