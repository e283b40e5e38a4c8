#!/usr/bin/python3
"""nbd_tls_probe.py - a raw NBD client that checks how a server negotiates TLS.

Written for tests/nbd_tls_test.sh. Real clients (libnbd, qemu) either succeed or fail; they
cannot say which reply an option got before TLS, whether an export's size leaked to a plaintext
client, or how a second NBD_OPT_STARTTLS is answered. This client speaks the fixed newstyle
handshake byte by byte (Python 3 standard library only; the TLS side is the ssl module).

    nbd_tls_probe.py (--socket PATH | --port N) SCENARIO [--ca FILE [--cert FILE --key FILE]]
                     [--size BYTES] [--name EXPORT]

Scenarios (a server in the mode named in brackets passes; exit 0 pass, 1 fail):
  forced          [require] NBD_OPT_LIST, INFO, GO, STRUCTURED_REPLY, LIST_META_CONTEXT and an
                  unknown option before TLS each get exactly one reply, NBD_REP_ERR_TLS_REQD;
                  no NBD_REP_SERVER/NBD_REP_INFO reply, and neither the export's size (--size,
                  as the 64-bit big-endian number NBD_INFO_EXPORT carries) nor its name (--name)
                  appears anywhere in what the server sent
  export-name     [require] NBD_OPT_EXPORT_NAME as the first option: the server closes the
                  connection without sending a byte
  starttls-data   [require, on] NBD_OPT_STARTTLS carrying data: NBD_REP_ERR_INVALID, and the
                  connection stays in option haggling (NBD_OPT_ABORT is answered or closes)
  starttls-twice  [require, on] NBD_OPT_STARTTLS: NBD_REP_ACK; the TLS handshake succeeds with
                  --ca (and --cert/--key); inside TLS a second STARTTLS gets NBD_REP_ERR_INVALID
                  and NBD_OPT_LIST then works (NBD_REP_SERVER, NBD_REP_ACK)
  notls           [off] NBD_OPT_STARTTLS gets NBD_REP_ERR_UNSUP or NBD_REP_ERR_POLICY (both are
                  what the specification's NOTLS mode allows); NBD_OPT_LIST then works in
                  plaintext

Each reply is printed as "OPTION -> REPLY (N data bytes)" so that a log shows what a server did.
"""

import argparse
import socket
import ssl
import struct
import sys

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT = {"EXPORT_NAME": 1, "ABORT": 2, "LIST": 3, "STARTTLS": 5, "INFO": 6, "GO": 7,
       "STRUCTURED_REPLY": 8, "LIST_META_CONTEXT": 9, "UNKNOWN_0x4242": 0x4242}
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
REP_ERR_UNSUP, REP_ERR_POLICY, REP_ERR_INVALID, REP_ERR_TLS_REQD = 0x80000001, 0x80000002, 0x80000003, 0x80000005
REP_NAMES = {1: "ACK", 2: "SERVER", 3: "INFO", 4: "META_CONTEXT", 0x80000001: "ERR_UNSUP",
             0x80000002: "ERR_POLICY", 0x80000003: "ERR_INVALID", 0x80000004: "ERR_PLATFORM",
             0x80000005: "ERR_TLS_REQD", 0x80000006: "ERR_UNKNOWN", 0x80000007: "ERR_SHUTDOWN",
             0x80000008: "ERR_BLOCK_SIZE_REQD", 0x80000009: "ERR_TOO_BIG"}


class Failed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failed(what)


class Conn:
    """One connection; every byte received is kept in `received` for the leak check."""

    def __init__(self, args):
        if args.socket:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(10)
            self.sock.connect(args.socket)
        else:
            self.sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
        self.received = bytearray()

    def recv_exact(self, n):
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise Failed(f"connection closed after {len(out)} of {n} expected bytes")
            out += chunk
        self.received += out
        return bytes(out)

    def greet(self):
        magic, opt_magic, flags = struct.unpack(">QQH", self.recv_exact(18))
        expect(magic == NBDMAGIC and opt_magic == IHAVEOPT, "not a newstyle NBD greeting")
        expect(flags & FLAG_FIXED_NEWSTYLE, "server does not offer fixed newstyle (TLS needs it)")
        self.sock.sendall(struct.pack(">I", FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES)))

    def send_option(self, name, data=b""):
        self.sock.sendall(struct.pack(">QII", IHAVEOPT, OPT[name], len(data)) + data)

    def replies(self, name):
        """Reads the replies to option NAME up to its final one (ACK or an error)."""
        got = []
        while True:
            magic, opt, rtype, length = struct.unpack(">QIII", self.recv_exact(20))
            expect(magic == REPLY_MAGIC, f"{name}: bad reply magic {magic:#x}")
            expect(opt == OPT[name], f"{name}: reply names option {opt}")
            expect(length <= 65536, f"{name}: reply of {length} bytes")
            data = self.recv_exact(length)
            print(f"  {name} -> {REP_NAMES.get(rtype, hex(rtype))} ({length} data bytes)")
            got.append((rtype, data))
            if rtype == REP_ACK or rtype & 0x80000000:
                return got

    def one_reply(self, name, data=b""):
        self.send_option(name, data)
        got = self.replies(name)
        expect(len(got) == 1, f"{name}: {len(got)} replies, expected one")
        return got[0][0]

    def read_until_closed(self):
        out = bytearray()
        while True:
            try:
                chunk = self.sock.recv(4096)
            except ConnectionResetError:
                return bytes(out)
            if not chunk:
                return bytes(out)
            out += chunk

    def start_tls(self, args):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name localhost
        ctx.load_verify_locations(args.ca)
        if args.cert:
            ctx.load_cert_chain(args.cert, args.key)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        print(f"  TLS handshake done: {self.sock.version()}")

    def abort(self):
        """NBD_OPT_ABORT; the server may answer ACK or just close (both are allowed)."""
        self.send_option("ABORT")
        try:
            self.replies("ABORT")
        except (Failed, OSError):
            pass
        self.sock.close()


def forced(args):
    c = Conn(args)
    c.greet()
    export_query = struct.pack(">I", 0) + struct.pack(">H", 0)  # name "" and no info requests
    name = struct.pack(">I", len(args.name)) + args.name.encode()
    name_query = name + struct.pack(">H", 0)
    meta_query = name + struct.pack(">I", 0)  # no queries: "list every context"
    for name, data in (("LIST", b""), ("INFO", export_query), ("GO", export_query),
                       ("INFO", name_query), ("STRUCTURED_REPLY", b""),
                       ("LIST_META_CONTEXT", meta_query), ("UNKNOWN_0x4242", b"")):
        rtype = c.one_reply(name, data)
        expect(rtype == REP_ERR_TLS_REQD, f"{name} before TLS: {REP_NAMES.get(rtype, hex(rtype))}, "
               "expected ERR_TLS_REQD")
    if args.size:
        expect(struct.pack(">Q", args.size) not in c.received, "the export size reached a plaintext client")
    if args.name:
        expect(args.name.encode() not in c.received, "the export name reached a plaintext client")
    c.abort()


def export_name(args):
    c = Conn(args)
    c.greet()
    c.send_option("EXPORT_NAME", args.name.encode())
    extra = c.read_until_closed()
    print(f"  EXPORT_NAME -> connection closed after {len(extra)} bytes")
    expect(not extra, f"EXPORT_NAME before TLS got {len(extra)} bytes back, expected none")


def starttls_data(args):
    c = Conn(args)
    c.greet()
    rtype = c.one_reply("STARTTLS", b"junk")
    expect(rtype == REP_ERR_INVALID, f"STARTTLS with data: {REP_NAMES.get(rtype, hex(rtype))}, expected ERR_INVALID")
    c.abort()


def starttls_twice(args):
    c = Conn(args)
    c.greet()
    rtype = c.one_reply("STARTTLS")
    expect(rtype == REP_ACK, f"STARTTLS: {REP_NAMES.get(rtype, hex(rtype))}, expected ACK")
    c.start_tls(args)
    rtype = c.one_reply("STARTTLS")
    expect(rtype == REP_ERR_INVALID, f"STARTTLS inside TLS: {REP_NAMES.get(rtype, hex(rtype))}, expected ERR_INVALID")
    c.send_option("LIST")
    types = [t for t, _ in c.replies("LIST")]
    expect(types and types[-1] == REP_ACK and REP_SERVER in types, f"LIST inside TLS: {types}")
    c.abort()


def notls(args):
    c = Conn(args)
    c.greet()
    rtype = c.one_reply("STARTTLS")
    expect(rtype in (REP_ERR_UNSUP, REP_ERR_POLICY),
           f"STARTTLS without TLS: {REP_NAMES.get(rtype, hex(rtype))}, expected ERR_UNSUP or ERR_POLICY")
    c.send_option("LIST")
    types = [t for t, _ in c.replies("LIST")]
    expect(types and types[-1] == REP_ACK and REP_SERVER in types, f"plaintext LIST after the refusal: {types}")
    c.abort()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket")
    where.add_argument("--port", type=int)
    p.add_argument("scenario", choices=["forced", "export-name", "starttls-data", "starttls-twice", "notls"])
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--name", default="")
    args = p.parse_args()
    if args.scenario == "starttls-twice" and not args.ca:
        p.error("starttls-twice needs --ca")
    run = {"forced": forced, "export-name": export_name, "starttls-data": starttls_data,
           "starttls-twice": starttls_twice, "notls": notls}[args.scenario]
    try:
        run(args)
    except (Failed, OSError, ssl.SSLError) as e:
        print(f"FAILED: {args.scenario}: {e}")
        return 1
    print(f"ok: {args.scenario}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
