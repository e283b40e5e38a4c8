#!/usr/bin/python3
"""fault_proxy.py - an HTTP/1.1 reverse proxy that shapes the link and injects faults.

Written for ovbd's lazy-loading tests and benchmark: it sits between an HTTP client (ovbd's
libcurl reader, curl) and an origin (a registry on 127.0.0.1), forwards every request, and on
demand breaks things in ways a real network or registry does. Python 3 standard library only.

Run
    fault_proxy.py --listen 127.0.0.1:0 --upstream http://127.0.0.1:5000 [--port-file F]
    fault_proxy.py --listen 127.0.0.1:0 --serve-dir DIR          # be the origin yourself

Once the socket listens it writes the port to --port-file (atomically) and prints
"listening on HOST:PORT" to stdout. SIGTERM / SIGINT shut it down cleanly (exit status 0).

Forwarding: method, path, query, headers and body are forwarded as received (except hop-by-hop
headers; the client's Host header is kept so that a registry builds its Location URLs for the
proxy). Bodies are streamed both ways; chunked request bodies are re-chunked to the origin;
"Expect: 100-continue" is answered by the proxy when it starts reading the body. Each client
connection is served by its own thread and keeps its own keep-alive connection to the origin.

--serve-dir DIR makes the proxy its own origin: GET/HEAD of files under DIR with single-range
support (206 + Content-Range, 416), and any other method answers 200 with a JSON description of
the received body ({"method", "path", "length", "sha256"}) - handy to test uploads.

Link shaping (also changeable at run time):
    --rate-mbit R     response bodies of all connections share one R Mbit/s token bucket
    --rate-up-mbit R  the same for request bodies (off by default)
    --latency-ms L    added once per request, before the request is forwarded (round trip)

Faults. Each kind takes a SPEC: a bare probability ("0.2") or comma-separated key=value items:
    p=PROB        fire with this probability (uses the proxy's seeded RNG)
    every=N       fire on every Nth eligible request (N, 2N, ... counted since the rule was set)
    limit=K       inject at most K times, then stay quiet
    path=REGEX    only requests whose path+query matches (re.search); overrides --path-regex
    plus the kind's own parameter (below). p and every may be combined (either fires).
Kinds, in precedence order when several fire on one request:
    refuse       per connection: accept, then close with a reset (RST) without reading a
                 request (path and method filters do not apply; control requests are spared)
    blackhole    read the request and never answer (until the client or the proxy gives up)
    drop_before  read the request and close the connection without a response
    status500    answer 500 without contacting the origin
    status503    answer 503; retry_after=S adds "Retry-After: S"
    truncate     send the headers as received (full Content-Length) and after_bytes=K body bytes,
                 then close (default K: half the body; capped below the body length)
  and, combinable with the above:
    delay        hold the response ms=D milliseconds (on top of --latency-ms)
    corrupt      flip one byte (offset=O, default the middle of the body) - off unless asked for;
                 the only fault that alters data, for testing digest verification
Flags: --refuse/--blackhole/--drop-before/--status500/--status503/--truncate/--delay/--corrupt
SPEC, with defaults for the parameters from --retry-after, --truncate-after, --delay-ms,
--corrupt-offset. --path-regex and --methods limit all faults; --seed makes it reproducible
(without it a random seed is chosen and shown in GET /__proxy__/faults). --faults-json takes
the same JSON as the control endpoint (or @FILE). A truncated body is always visible as a short
body on a closed connection (or a chunked body without its last chunk); no fault but corrupt
changes bytes.

Control endpoint, on the same port (never forwarded, never faulted, not counted):
    GET  /__proxy__/faults        current configuration (JSON)
    POST /__proxy__/faults        JSON body, merged into the configuration; answers the result
         {"reset": true,                  # first clear all faults and filters (not shaping)
          "seed": 7,                      # reseed the RNG
          "path_regex": "/blobs/", "methods": ["GET"],   # null clears
          "rate_mbit": 100, "rate_up_mbit": 0, "latency_ms": 10,
          "status503": {"every": 3, "retry_after": 1, "limit": 2},
          "truncate": {"p": 0.1, "after_bytes": 4096},
          "delay": "every=1,ms=200",      # SPEC strings and bare probabilities work too
          "drop_before": null}            # null / false / {} disables a kind
    GET  /__proxy__/stats         {"requests", "connections", "active_connections",
                                   "bytes_down", "bytes_up", "upstream_errors",
                                   "status": {"200": n, ...}, "faults": {kind: n}, ...}
    POST /__proxy__/stats/reset   zero the counters
    Invalid JSON or unknown keys answer 400 and change nothing.

Example
    p=$(mktemp); ./fault_proxy.py --upstream http://127.0.0.1:5000 --port-file $p \\
        --rate-mbit 100 --latency-ms 10 --status503 every=5 --path-regex /blobs/ &
    curl -s -X POST --data '{"truncate": {"p": 0.05}}' http://127.0.0.1:$(cat $p)/__proxy__/faults
"""

import argparse
import email.utils
import hashlib
import http.client
import http.server
import json
import os
import random
import re
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse

CONTROL_PREFIX = "/__proxy__/"
# Evaluation order; the first five are terminal (at most one applies), delay and corrupt add on.
REQUEST_KINDS = ("blackhole", "drop_before", "status500", "status503", "truncate", "delay",
                 "corrupt")
TERMINAL_KINDS = REQUEST_KINDS[:5]
ALL_KINDS = ("refuse",) + REQUEST_KINDS
KIND_PARAMS = {  # kind -> {parameter: type}
    "status503": {"retry_after": int},
    "truncate": {"after_bytes": int},
    "delay": {"ms": float},
    "corrupt": {"offset": int},
}
SPEC_ALIASES = {"p": "p", "prob": "p", "probability": "p", "every": "every", "limit": "limit",
                "path": "path_regex", "path_regex": "path_regex", "after": "after_bytes",
                "after_bytes": "after_bytes", "ms": "ms", "retry_after": "retry_after",
                "offset": "offset"}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
              "expect"}
CHUNK = 64 * 1024
BURST_BYTES = 64 * 1024


class ClientGone(Exception):
    """The client closed or broke its connection."""


# ---------------------------------------------------------------------------------------------
# Fault configuration

class Rule:
    """One fault kind: when it fires (p / every / limit / path) and its parameter."""

    def __init__(self, kind, spec):
        self.kind = kind
        self.p = 0.0
        self.every = 0
        self.limit = 0
        self.path_regex = None
        self.params = {}
        self.seen = 0       # eligible requests (or connections) since the rule was set
        self.injected = 0
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            spec = {"p": spec}
        elif isinstance(spec, str):
            spec = parse_spec(spec)
        if not isinstance(spec, dict):
            raise ValueError(f"{kind}: expected an object, a probability or a SPEC string")
        allowed = {"p", "prob", "every", "limit", "path_regex"} | set(KIND_PARAMS.get(kind, {}))
        for key, value in spec.items():
            if key not in allowed:
                raise ValueError(f"{kind}: unknown key {key!r} (allowed: {sorted(allowed)})")
            if key in ("p", "prob"):
                self.p = float(value)
                if not 0.0 <= self.p <= 1.0:
                    raise ValueError(f"{kind}: p must be within [0, 1]")
            elif key in ("every", "limit"):
                if isinstance(value, bool) or int(value) != value or int(value) < 0:
                    raise ValueError(f"{kind}: {key} must be a non-negative integer")
                setattr(self, key, int(value))
            elif key == "path_regex":
                self.path_regex = re.compile(value) if value else None
            else:
                value = KIND_PARAMS[kind][key](value) if value is not None else None
                if value is not None and value < 0:
                    raise ValueError(f"{kind}: {key} must not be negative")
                self.params[key] = value

    def active(self):
        return self.p > 0 or self.every > 0

    def to_json(self):
        out = {"p": self.p, "every": self.every, "limit": self.limit,
               "path_regex": self.path_regex.pattern if self.path_regex else None,
               "seen": self.seen, "injected": self.injected}
        out.update(self.params)
        return out


def parse_spec(text):
    """'0.2' or 'every=3,limit=2,ms=100' -> dict."""
    text = text.strip()
    try:
        return {"p": float(text)}
    except ValueError:
        pass
    out = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in SPEC_ALIASES:
            raise ValueError(f"bad fault spec item {item!r} (want p=, every=, limit=, path=, "
                             f"or a parameter such as ms=, after=, retry_after=, offset=)")
        key = SPEC_ALIASES[key]
        value = value.strip()
        out[key] = value if key == "path_regex" else float(value)
        if key in ("every", "limit", "after_bytes", "retry_after", "offset"):
            if out[key] != int(out[key]):
                raise ValueError(f"{key} must be an integer")
            out[key] = int(out[key])
    return out


class Decision:
    def __init__(self):
        self.terminal = None      # one of TERMINAL_KINDS or None
        self.rules = {}           # kind -> Rule that fired and was applied
        self.delay_ms = 0.0

    def param(self, kind, name):
        rule = self.rules.get(kind)
        return rule.params.get(name) if rule else None


class FaultConfig:
    def __init__(self, stats):
        self.lock = threading.Lock()
        self.stats = stats
        self.rules = {}
        self.path_regex = None
        self.methods = None
        self.seed = random.SystemRandom().randrange(1 << 31)
        self.rng = random.Random(self.seed)
        self.latency_ms = 0.0
        self.rate_mbit = 0.0
        self.rate_up_mbit = 0.0
        self.on_shaping_change = None

    KEYS = set(ALL_KINDS) | {"reset", "seed", "path_regex", "methods", "latency_ms", "rate_mbit",
                             "rate_up_mbit"}

    def apply(self, conf):
        """Validate conf completely, then apply it atomically. Raises ValueError."""
        if not isinstance(conf, dict):
            raise ValueError("expected a JSON object")
        unknown = set(conf) - self.KEYS
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)} (known: {sorted(self.KEYS)})")
        new_rules = {}
        for kind in ALL_KINDS:
            if kind in conf:
                spec = conf[kind]
                if spec is None or spec is False or spec == {} or spec == "":
                    new_rules[kind] = None
                else:
                    new_rules[kind] = Rule(kind, spec)
        path_regex = self.path_regex
        if "path_regex" in conf:
            path_regex = re.compile(conf["path_regex"]) if conf["path_regex"] else None
        methods = self.methods
        if "methods" in conf:
            m = conf["methods"]
            if isinstance(m, str):
                m = [x for x in re.split(r"[,\s]+", m) if x]
            if m is not None and not (isinstance(m, list) and all(isinstance(x, str) for x in m)):
                raise ValueError("methods must be a list of strings or null")
            methods = {x.upper() for x in m} if m else None
        shaping = {}
        for key in ("latency_ms", "rate_mbit", "rate_up_mbit"):
            if key in conf:
                value = float(conf[key] or 0)
                if value < 0:
                    raise ValueError(f"{key} must not be negative")
                shaping[key] = value
        seed = conf.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer")
        with self.lock:
            if conf.get("reset"):
                self.rules = {}
                path_regex = re.compile(conf["path_regex"]) if conf.get("path_regex") else None
                methods = methods if "methods" in conf else None
            for kind, rule in new_rules.items():
                if rule is None or not rule.active():
                    self.rules.pop(kind, None)
                else:
                    self.rules[kind] = rule
            self.path_regex = path_regex
            self.methods = methods
            if seed is not None:
                self.seed = seed
                self.rng = random.Random(seed)
            for key, value in shaping.items():
                setattr(self, key, value)
        if shaping and self.on_shaping_change:
            self.on_shaping_change()

    def to_json(self):
        with self.lock:
            return {"seed": self.seed,
                    "path_regex": self.path_regex.pattern if self.path_regex else None,
                    "methods": sorted(self.methods) if self.methods else None,
                    "latency_ms": self.latency_ms, "rate_mbit": self.rate_mbit,
                    "rate_up_mbit": self.rate_up_mbit,
                    "faults": {k: r.to_json() for k, r in self.rules.items()}}

    def _fires(self, rule):
        """Call with the lock held. Counts the event; draws from the RNG deterministically."""
        rule.seen += 1
        hit = bool(rule.every) and rule.seen % rule.every == 0
        if rule.p > 0:
            hit = (self.rng.random() < rule.p) or hit
        if rule.limit and rule.injected >= rule.limit:
            return False
        return hit

    def has_refuse(self):
        with self.lock:
            return "refuse" in self.rules

    def decide_refuse(self):
        with self.lock:
            rule = self.rules.get("refuse")
            if rule is None or not self._fires(rule):
                return False
            rule.injected += 1
        self.stats.fault("refuse")
        return True

    def decide(self, method, target):
        d = Decision()
        with self.lock:
            if self.methods is not None and method.upper() not in self.methods:
                return d
            fired = []
            for kind in REQUEST_KINDS:
                rule = self.rules.get(kind)
                if rule is None:
                    continue
                regex = rule.path_regex or self.path_regex
                if regex is not None and not regex.search(target):
                    continue
                if self._fires(rule):
                    fired.append(kind)
            for kind in fired:
                if kind in TERMINAL_KINDS:
                    if d.terminal is not None:
                        continue
                    d.terminal = kind
                rule = self.rules[kind]
                rule.injected += 1
                d.rules[kind] = rule
            if "delay" in d.rules:
                d.delay_ms = d.rules["delay"].params.get("ms") or 0.0
            latency = self.latency_ms
        for kind in d.rules:
            self.stats.fault(kind)
        d.latency_ms = latency
        return d

    def not_applied(self, rule):
        """A fault that could not be applied (e.g. truncate on an empty body): uncount it."""
        with self.lock:
            rule.injected -= 1
        self.stats.fault(rule.kind, -1)


# ---------------------------------------------------------------------------------------------
# Statistics and link shaping

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.reset()

    def reset(self):
        with self.lock:
            self.c = {"requests": 0, "control_requests": 0, "connections": 0, "bytes_down": 0,
                      "bytes_up": 0, "upstream_errors": 0, "client_errors": 0}
            self.status = {}
            self.faults = {k: 0 for k in ALL_KINDS}

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def fault(self, kind, n=1):
        with self.lock:
            self.faults[kind] += n

    def status_code(self, code):
        with self.lock:
            self.status[str(code)] = self.status.get(str(code), 0) + 1

    def to_json(self, active):
        with self.lock:
            out = dict(self.c)
            out["status"] = dict(self.status)
            out["faults"] = dict(self.faults)
            out["faults_total"] = sum(self.faults.values())
        out["active_connections"] = active
        out["uptime_s"] = round(time.monotonic() - self.started, 3)
        return out


class Link:
    """A token bucket shared by all connections: one link of `rate` Mbit/s, BURST_BYTES deep."""

    def __init__(self, stop):
        self.lock = threading.Lock()
        self.stop = stop
        self.rate = 0.0  # bytes per second; 0 = unlimited
        self.empty_at = 0.0  # virtual time at which the bucket is empty

    def set_mbit(self, mbit):
        with self.lock:
            self.rate = mbit * 1e6 / 8.0
            self.empty_at = time.monotonic()

    def acquire(self, n):
        """Blocks until n bytes may be sent. Returns False if the proxy is stopping."""
        with self.lock:
            if self.rate <= 0:
                return not self.stop.is_set()
            now = time.monotonic()
            start = max(self.empty_at, now - BURST_BYTES / self.rate)
            self.empty_at = start + n / self.rate
            wait = self.empty_at - now
        if wait > 0:
            return not self.stop.wait(wait)
        return not self.stop.is_set()


# ---------------------------------------------------------------------------------------------
# Responses to relay: from the origin, from --serve-dir, or generated

class UpstreamResponse:
    def __init__(self, resp, handler, no_body):
        self.resp = resp
        self.handler = handler
        self.status = resp.status
        self.reason = resp.reason
        self.no_body = no_body
        conn_tokens = {t.strip().lower() for v in resp.msg.get_all("Connection", [])
                       for t in v.split(",")}
        self.headers = [(k, v) for k, v in resp.getheaders()
                        if k.lower() not in HOP_BY_HOP and k.lower() not in conn_tokens]
        self.length = None
        if not resp.chunked:
            cl = resp.getheader("Content-Length")
            if cl is not None and cl.strip().isdigit():
                self.length = int(cl)
        if no_body:
            self.length = 0

    def read(self, n):
        if self.no_body:
            return b""
        return self.resp.read1(n)

    def close(self, complete):
        reusable = complete and not self.resp.will_close
        try:
            if reusable:
                self.resp.read()  # nothing left; lets http.client mark the connection idle
            self.resp.close()
        except (OSError, http.client.HTTPException):
            reusable = False
        if not reusable:
            self.handler.close_upstream()


class LocalResponse:
    def __init__(self, status, headers, body=b"", fileobj=None, length=None, no_body=False):
        self.status = status
        self.reason = None
        self.headers = headers
        self.body = body
        self.fileobj = fileobj
        self.no_body = no_body
        self.announce = length if fileobj else len(body)
        self.length = 0 if no_body else self.announce
        self.left = self.length

    def read(self, n):
        n = min(n, self.left)
        if n <= 0:
            return b""
        if self.fileobj is not None:
            data = self.fileobj.read(n)
        else:
            data = self.body[self.length - self.left:self.length - self.left + n]
        self.left -= len(data)
        return data

    def close(self, complete):
        if self.fileobj is not None:
            self.fileobj.close()


def parse_range(value, size):
    """Single 'bytes=' range -> (start, end) inclusive, 'bad' if unsatisfiable, None to ignore."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value or "")
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None  # absent, malformed or multi-range: serve the whole file
    if m.group(1) == "":
        n = int(m.group(2))
        if n == 0 or size == 0:
            return "bad"
        return max(0, size - n), size - 1
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


# ---------------------------------------------------------------------------------------------
# The server

class ProxyServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name (getfqdn); not needed, can be slow.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):
        # Connection breakage is handled in Handler.handle; what gets here is a bug: show it.
        print(f"fault_proxy: error while serving {client_address}:", file=sys.stderr)
        import traceback
        traceback.print_exc()


class State:
    def __init__(self, args):
        self.stop = threading.Event()
        self.stats = Stats()
        self.faults = FaultConfig(self.stats)
        self.down = Link(self.stop)
        self.up = Link(self.stop)
        self.faults.on_shaping_change = self.update_links
        self.verbose = args.verbose
        self.serve_dir = os.path.realpath(args.serve_dir) if args.serve_dir else None
        self.upstream = None
        self.upstream_timeout = args.upstream_timeout
        if args.upstream:
            u = urllib.parse.urlsplit(args.upstream)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise SystemExit(f"fault_proxy: bad --upstream URL {args.upstream!r}")
            self.upstream = (u.scheme, u.hostname, u.port or (443 if u.scheme == "https" else 80),
                             u.path.rstrip("/"))
        self.sock_lock = threading.Lock()
        self.sockets = set()

    def update_links(self):
        self.down.set_mbit(self.faults.rate_mbit)
        self.up.set_mbit(self.faults.rate_up_mbit)

    def register(self, sock):
        with self.sock_lock:
            self.sockets.add(sock)

    def unregister(self, sock):
        with self.sock_lock:
            self.sockets.discard(sock)

    def active(self):
        with self.sock_lock:
            return len(self.sockets)

    def close_all(self):
        with self.sock_lock:
            socks = list(self.sockets)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ovbd-fault-proxy/1"
    timeout = 300  # idle keep-alive connections from clients

    # -- connection life cycle ------------------------------------------------------------

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle holds the body
        # until the client's delayed ACK (40 ms on Linux) on every reused connection: a stall
        # per request that no real link or registry adds.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.st = self.server.state
        self.upstream_conn = None
        self.upstream_used = False
        self.st.register(self.connection)

    def handle(self):
        self.st.stats.add("connections")
        if self.st.faults.has_refuse() and not self.peek_control() \
                and self.st.faults.decide_refuse():
            try:  # close with a reset, as a refusing or crashing server would
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass
            self.close_connection = True
            return
        try:
            super().handle()
        except ClientGone:
            self.st.stats.add("client_errors")
            self.hard_close()
        except (ConnectionError, TimeoutError, OSError):
            self.hard_close()

    def peek_control(self):
        """Whether the first request on this connection is for the control endpoint (so that
        "refuse" cannot lock the tests out). Waits up to 2 s for the request line."""
        sock = self.connection
        data = b""
        deadline = time.monotonic() + 2.0
        try:
            while len(data) < 80 and b"\n" not in data and time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                new = sock.recv(80, socket.MSG_PEEK)
                if len(new) == len(data):
                    if not new:
                        break
                    time.sleep(0.005)
                data = new
        except OSError:
            pass
        finally:
            try:
                sock.settimeout(self.timeout)
            except OSError:
                pass
        return re.match(rb"[A-Z]+ +(?:[a-z]+://[^/ ]*)?" + re.escape(CONTROL_PREFIX.encode()),
                        data) is not None

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        self.close_upstream()
        self.st.unregister(self.connection)

    def hard_close(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def parse_request(self):
        self.expect_pending = False
        self.body_done = False
        return super().parse_request()

    def handle_expect_100(self):
        # Answer "100 Continue" only when the body is actually read (see request_body).
        self.expect_pending = True
        return True

    def log_message(self, fmt, *args):
        if self.st.verbose:
            sys.stderr.write("fault_proxy: %s - %s\n" % (self.address_string(), fmt % args))

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.dispatch
        raise AttributeError(name)

    # -- request bodies ---------------------------------------------------------------------

    def has_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return True
        cl = self.headers.get("Content-Length")
        return cl is not None and cl.strip() not in ("", "0")

    def request_body(self):
        """Yields the request body in pieces (de-chunked). Raises ClientGone."""
        self.body_done = True
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        cl = self.headers.get("Content-Length")
        if not chunked and (cl is None or cl.strip() in ("", "0")):
            return
        if self.expect_pending:
            self.expect_pending = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            if not chunked:
                left = int(cl)
                if left < 0:
                    raise ValueError
                while left > 0:
                    data = self.rfile.read(min(left, CHUNK))
                    if not data:
                        raise ClientGone("short request body")
                    left -= len(data)
                    yield data
                return
            while True:
                line = self.rfile.readline(65537)
                if not line.endswith(b"\n"):
                    raise ClientGone("bad chunk header")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while True:  # trailers up to the empty line
                        line = self.rfile.readline(65537)
                        if line in (b"\r\n", b"\n"):
                            return
                        if not line:
                            raise ClientGone("request body ended in the trailers")
                while size > 0:
                    data = self.rfile.read(min(size, CHUNK))
                    if not data:
                        raise ClientGone("short chunk")
                    size -= len(data)
                    yield data
                self.rfile.readline(65537)
        except (ValueError, OSError) as e:
            raise ClientGone(str(e)) from e

    def discard_body(self):
        """Before answering without the origin: keep the connection usable if possible."""
        if self.body_done or not self.has_body():
            return
        if self.expect_pending:  # the client has not sent it; don't ask for it
            self.close_connection = True
            return
        for data in self.request_body():
            self.st.stats.add("bytes_up", len(data))

    # -- dispatch ---------------------------------------------------------------------------

    def dispatch(self):
        target = self.path
        if not target.startswith("/"):  # absolute-form, as sent to a forward proxy
            u = urllib.parse.urlsplit(target)
            target = (u.path or "/") + ("?" + u.query if u.query else "")
        if target.startswith(CONTROL_PREFIX):
            self.st.stats.add("control_requests")
            self.control(target)
            return
        self.st.stats.add("requests")
        d = self.st.faults.decide(self.command, target)
        if d.terminal == "blackhole":
            self.blackhole()
            return
        if d.terminal == "drop_before":
            self.hard_close()
            return
        wait = (d.latency_ms + d.delay_ms) / 1000.0
        if wait > 0 and self.st.stop.wait(wait):
            self.hard_close()
            return
        if d.terminal in ("status500", "status503"):
            code = 500 if d.terminal == "status500" else 503
            extra = []
            if d.terminal == "status503" and d.param("status503", "retry_after") is not None:
                extra.append(("Retry-After", str(d.param("status503", "retry_after"))))
            self.discard_body()
            self.relay(self.simple(code, f"fault_proxy: injected {code}\n", extra), d)
            return
        if self.st.serve_dir:
            resp = self.serve_local(target)
        else:
            resp = self.forward(target)
        if resp is not None:
            self.relay(resp, d)

    def simple(self, code, text, extra=(), ctype="text/plain"):
        body = text.encode()
        headers = [("Content-Type", ctype), ("Date", self.date_time_string())] + list(extra)
        return LocalResponse(code, headers, body, no_body=self.command == "HEAD")

    # -- control endpoint -------------------------------------------------------------------

    def control(self, target):
        path = urllib.parse.urlsplit(target).path
        body = b"".join(self.request_body())
        code, out = 200, None
        if path == CONTROL_PREFIX + "stats" and self.command in ("GET", "HEAD"):
            out = self.st.stats.to_json(self.st.active())
        elif path == CONTROL_PREFIX + "stats/reset" and self.command == "POST":
            self.st.stats.reset()
            out = self.st.stats.to_json(self.st.active())
        elif path == CONTROL_PREFIX + "faults" and self.command in ("GET", "HEAD"):
            out = self.st.faults.to_json()
        elif path == CONTROL_PREFIX + "faults" and self.command in ("POST", "PUT"):
            try:
                self.st.faults.apply(json.loads(body.decode() or "{}"))
                out = self.st.faults.to_json()
            except (ValueError, TypeError, re.error) as e:
                code, out = 400, {"error": str(e)}
        else:
            code, out = 404, {"error": f"no control action {self.command} {path}"}
        resp = self.simple(code, json.dumps(out, indent=1, sort_keys=True) + "\n",
                           ctype="application/json")
        self.relay(resp, Decision(), count=False)

    # -- faults that never answer -----------------------------------------------------------

    def blackhole(self):
        """Swallow whatever the client sends and never answer."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.settimeout(0.25)
            while not self.st.stop.is_set():
                try:
                    if not sock.recv(CHUNK):
                        break
                except socket.timeout:
                    continue
        except OSError:
            pass
        self.hard_close()

    # -- origins ----------------------------------------------------------------------------

    def close_upstream(self):
        if self.upstream_conn is not None:
            try:
                self.upstream_conn.close()
            except OSError:
                pass
        self.upstream_conn = None
        self.upstream_used = False

    def forward(self, target):
        scheme, host, port, prefix = self.st.upstream
        conn_tokens = {t.strip().lower() for v in self.headers.get_all("Connection", [])
                       for t in v.split(",")}
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        headers = [(k, v) for k, v in self.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() not in conn_tokens
                   and not (chunked and k.lower() == "content-length")]
        if self.headers.get("Host") is None:
            headers.append(("Host", host if port in (80, 443) else f"{host}:{port}"))
        has_body = self.has_body()
        for attempt in (0, 1):
            if self.upstream_conn is None:
                if scheme == "https":
                    self.upstream_conn = http.client.HTTPSConnection(
                        host, port, timeout=self.upstream_timeout(),
                        context=ssl.create_default_context())
                else:
                    self.upstream_conn = http.client.HTTPConnection(
                        host, port, timeout=self.upstream_timeout())
            reused = self.upstream_used
            conn = self.upstream_conn
            try:
                conn.putrequest(self.command, prefix + target, skip_host=True,
                                skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                if chunked:
                    conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                self.upstream_used = True
                if has_body:
                    for data in self.request_body():
                        if not self.st.up.acquire(len(data)):
                            raise ClientGone("stopping")
                        self.st.stats.add("bytes_up", len(data))
                        conn.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                    if chunked:
                        conn.send(b"0\r\n\r\n")
                resp = conn.getresponse()
            except ClientGone:
                self.close_upstream()
                raise
            except (OSError, http.client.HTTPException) as e:
                self.close_upstream()
                if attempt == 0 and reused and not has_body:
                    continue  # a stale keep-alive connection: retry once on a fresh one
                self.st.stats.add("upstream_errors")
                if has_body:
                    self.close_connection = True  # the body is gone or half read
                return self.simple(502, f"fault_proxy: upstream error: {e}\n")
            no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
            return UpstreamResponse(resp, self, no_body)

    def upstream_timeout(self):
        return self.st.upstream_timeout

    def serve_local(self, target):
        if self.command not in ("GET", "HEAD"):
            h = hashlib.sha256()
            n = 0
            for data in self.request_body():
                self.st.stats.add("bytes_up", len(data))
                h.update(data)
                n += len(data)
            out = {"method": self.command, "path": target, "length": n, "sha256": h.hexdigest()}
            return self.simple(200, json.dumps(out) + "\n", ctype="application/json")
        self.discard_body()
        rel = urllib.parse.unquote(urllib.parse.urlsplit(target).path).lstrip("/")
        path = os.path.realpath(os.path.join(self.st.serve_dir, rel))
        if not (path == self.st.serve_dir or path.startswith(self.st.serve_dir + os.sep)) \
                or not os.path.isfile(path):
            return self.simple(404, "not found\n")
        try:
            f = open(path, "rb")
        except OSError:
            return self.simple(403, "cannot open\n")
        st = os.fstat(f.fileno())
        size = st.st_size
        headers = [("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes"),
                   ("Date", self.date_time_string()),
                   ("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True)),
                   ("ETag", '"%x-%x"' % (int(st.st_mtime_ns), size))]
        rng = parse_range(self.headers.get("Range"), size)
        if rng == "bad":
            f.close()
            return self.simple(416, "range not satisfiable\n",
                               [("Content-Range", f"bytes */{size}")])
        no_body = self.command == "HEAD"
        if rng is None:
            return LocalResponse(200, headers, fileobj=f, length=size, no_body=no_body)
        start, end = rng
        f.seek(start)
        headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        return LocalResponse(206, headers, fileobj=f, length=end - start + 1, no_body=no_body)

    # -- sending a response -----------------------------------------------------------------

    def relay(self, r, d, count=True):
        """Send response r to the client, applying truncate / corrupt / rate limiting."""
        complete = False
        sent = 0
        try:
            if count:
                self.st.stats.status_code(r.status)
            self.send_response_only(r.status, r.reason or None)
            for k, v in r.headers:
                if k.lower() != "content-length" or r.no_body:
                    self.send_header(k, v)
            chunked_out = False
            if r.no_body:
                announce = getattr(r, "announce", None)
                if announce is not None:  # HEAD answered locally: the length a GET would have
                    self.send_header("Content-Length", str(announce))
            elif r.length is not None:
                self.send_header("Content-Length", str(r.length))
            elif self.request_version == "HTTP/1.1":
                self.send_header("Transfer-Encoding", "chunked")
                chunked_out = True
            else:
                self.close_connection = True
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()

            limit = None
            trunc = d.rules.get("truncate")
            if trunc is not None:
                k = trunc.params.get("after_bytes")
                if r.no_body or r.length == 0:
                    self.st.faults.not_applied(trunc)
                    trunc = None
                elif r.length is not None:
                    limit = r.length // 2 if k is None or k >= r.length else k
                else:
                    limit = k or 0
            corrupt = d.rules.get("corrupt")
            corrupt_at = None
            if corrupt is not None:
                if r.no_body or r.length == 0:
                    self.st.faults.not_applied(corrupt)
                    corrupt = None
                else:
                    corrupt_at = corrupt.params.get("offset")
                    if corrupt_at is None:
                        corrupt_at = (r.length // 2) if r.length is not None else 0
                    elif r.length is not None:
                        corrupt_at = min(corrupt_at, r.length - 1)

            while True:
                want = CHUNK if limit is None else min(CHUNK, limit - sent)
                if want <= 0:
                    break
                try:
                    data = r.read(want)
                except (OSError, http.client.HTTPException):
                    data = None  # the origin broke off: pass the breakage on, visibly
                if data is None:
                    self.hard_close()
                    return
                if not data:
                    break
                if corrupt_at is not None and sent <= corrupt_at < sent + len(data):
                    data = bytearray(data)
                    data[corrupt_at - sent] ^= 0xFF
                    data = bytes(data)
                    corrupt_at = None
                if not self.st.down.acquire(len(data)):
                    self.hard_close()
                    return
                try:
                    if chunked_out:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    else:
                        self.wfile.write(data)
                except OSError as e:
                    raise ClientGone(str(e)) from e
                sent += len(data)
                if count:
                    self.st.stats.add("bytes_down", len(data))
            if corrupt is not None and corrupt_at is not None:
                self.st.faults.not_applied(corrupt)  # the body ended before the offset
            if trunc is not None:
                self.hard_close()  # truncated: short body on a closed connection
                return
            if r.length is not None and not r.no_body and sent < r.length:
                self.hard_close()  # the origin sent less than it announced
                return
            if chunked_out:
                self.wfile.write(b"0\r\n\r\n")
            if self.has_body() and not self.body_done:
                self.close_connection = True  # unread request body: cannot continue
            complete = True
        finally:
            r.close(complete)
            if count:
                self.log_request(r.status, "-" if r.no_body else sent)


# ---------------------------------------------------------------------------------------------

def parse_listen(text):
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="fault_proxy.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="SPEC: a probability ('0.2') or items such as 'every=3,limit=2,path=/blobs/' "
               "(p=, every=, limit=, path=, and ms= / after= / retry_after= / offset=).\n"
               "Control: GET|POST /__proxy__/faults, GET /__proxy__/stats, "
               "POST /__proxy__/stats/reset")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 = any; default "
                    "%(default)s)")
    origin = ap.add_mutually_exclusive_group(required=True)
    origin.add_argument("--upstream", help="origin base URL, e.g. http://127.0.0.1:5000")
    origin.add_argument("--serve-dir", help="serve files from DIR (Range-capable) as the origin")
    ap.add_argument("--port-file", help="write the listening port to this file when ready")
    ap.add_argument("--rate-mbit", type=float, default=0, help="response-body bandwidth shared "
                    "by all connections, Mbit/s (0 = unlimited)")
    ap.add_argument("--rate-up-mbit", type=float, default=0, help="request-body bandwidth")
    ap.add_argument("--latency-ms", type=float, default=0, help="delay added to each request")
    for kind in ALL_KINDS:
        ap.add_argument("--" + kind.replace("_", "-"), metavar="SPEC", dest=kind,
                        help=f"inject {kind}")
    ap.add_argument("--delay-ms", type=float, help="default ms= for --delay")
    ap.add_argument("--truncate-after", type=int, help="default after= for --truncate (bytes)")
    ap.add_argument("--retry-after", type=int, help="default retry_after= for --status503 (s)")
    ap.add_argument("--corrupt-offset", type=int, help="default offset= for --corrupt")
    ap.add_argument("--path-regex", help="limit faults to requests whose path+query matches")
    ap.add_argument("--methods", help="limit faults to these methods (comma-separated)")
    ap.add_argument("--seed", type=int, help="RNG seed for probabilistic faults")
    ap.add_argument("--faults-json", help="initial configuration as control-endpoint JSON, "
                    "or @FILE")
    ap.add_argument("--upstream-timeout", type=float, default=60.0,
                    help="socket timeout towards the origin, s (default %(default)s)")
    ap.add_argument("--verbose", "-v", action="store_true", help="log requests to stderr")
    args = ap.parse_args(argv)

    state = State(args)
    conf = {"latency_ms": args.latency_ms, "rate_mbit": args.rate_mbit,
            "rate_up_mbit": args.rate_up_mbit}
    defaults = {"delay": ("ms", args.delay_ms), "truncate": ("after_bytes", args.truncate_after),
                "status503": ("retry_after", args.retry_after),
                "corrupt": ("offset", args.corrupt_offset)}
    try:
        for kind in ALL_KINDS:
            spec = getattr(args, kind)
            if spec is None:
                continue
            spec = parse_spec(spec)
            if kind in defaults and defaults[kind][1] is not None:
                spec.setdefault(*defaults[kind])
            conf[kind] = spec
        if args.path_regex:
            conf["path_regex"] = args.path_regex
        if args.methods:
            conf["methods"] = args.methods
        if args.seed is not None:
            conf["seed"] = args.seed
        state.faults.apply(conf)
        if args.faults_json:
            text = args.faults_json
            if text.startswith("@"):
                with open(text[1:]) as f:
                    text = f.read()
            state.faults.apply(json.loads(text))
    except (ValueError, re.error, OSError) as e:
        ap.error(str(e))
    state.update_links()

    host, port = parse_listen(args.listen)
    ProxyServer.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        server = ProxyServer((host, port), Handler)
    except OSError as e:
        print(f"fault_proxy: cannot listen on {args.listen}: {e}", file=sys.stderr)
        return 1
    server.state = state
    port = server.server_address[1]

    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="serve", daemon=True)
    thread.start()

    if args.port_file:
        tmp = f"{args.port_file}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on {shown}:{port}", flush=True)

    while not done.wait(0.5):
        pass
    state.stop.set()
    server.shutdown()
    state.close_all()
    server.server_close()
    thread.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
