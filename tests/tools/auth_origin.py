#!/usr/bin/python3
"""auth_origin.py - a registry that wants Bearer tokens and redirects blobs to other storage.

Written for ovbd's remote tests: Debian's docker-registry cannot be given a token server
without TLS certificates, so this stands in for the two parts of a real deployment that matter
to a client reading blobs (Python 3 standard library only, loopback only):

  registry  127.0.0.1:R
    GET  /token?service=..&scope=..   needs "Authorization: Basic" with --user/--password;
                                      answers {"token": T, "expires_in": --ttl}
    GET|HEAD /v2/REPO/blobs/DIGEST    needs "Authorization: Bearer T" (an unexpired token), else
                                      401 + WWW-Authenticate: Bearer realm=".../token",
                                      service="auth-origin",scope="repository:REPO:pull";
                                      with a token: 307 to the storage origin (a signed URL)
    GET  /stats                       JSON counters (below)
  storage   127.0.0.1:S (another origin: another port)
    GET|HEAD /blob/DIGEST?sig=..      the file --blobs/DIGEST, single Range requests (206);
                                      any Authorization header is a leak: counted, answered 400;
                                      a signature older than --ttl: 403 (an expired signed URL)

Counters: token_requests, token_refused, unauthorized (401s for blobs), redirects,
storage_requests, storage_auth_leaks, storage_expired. The ports are written to --port-file as "R S".
"""

import argparse
import base64
import http.server
import json
import os
import re
import secrets
import socketserver
import threading
import time
import urllib.parse

LOCK = threading.Lock()
STATS = {"token_requests": 0, "token_refused": 0, "unauthorized": 0, "redirects": 0,
         "storage_requests": 0, "storage_auth_leaks": 0, "storage_expired": 0}
TOKENS = {}  # token -> expiry (monotonic)
SIGNATURES = {}  # signed-URL sig -> expiry (monotonic): redirects expire like tokens


def count(key):
    with LOCK:
        STATS[key] += 1


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Base(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class Registry(Base):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/stats":
            with LOCK:
                body = json.dumps(STATS).encode()
            return self.answer(200, body, [("Content-Type", "application/json")])
        if url.path == "/token":
            count("token_requests")
            want = "Basic " + base64.b64encode(f"{ARGS.user}:{ARGS.password}".encode()).decode()
            if self.headers.get("Authorization") != want:
                count("token_refused")
                return self.answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            token = secrets.token_hex(16)
            with LOCK:
                TOKENS[token] = time.monotonic() + ARGS.ttl
            body = json.dumps({"token": token, "expires_in": ARGS.ttl}).encode()
            return self.answer(200, body, [("Content-Type", "application/json")])
        m = re.fullmatch(r"/v2/(.+)/blobs/(sha256:[0-9a-f]{64})", url.path)
        if not m or m.group(1) != ARGS.repo:
            return self.answer(404, b"not found")
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        with LOCK:
            valid = token in TOKENS and TOKENS[token] > time.monotonic()
        if not valid:
            count("unauthorized")
            realm = f"http://127.0.0.1:{REG_PORT}/token"
            challenge = (f'Bearer realm="{realm}",service="auth-origin",'
                         f'scope="repository:{ARGS.repo}:pull"')
            return self.answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                               [("WWW-Authenticate", challenge)])
        count("redirects")
        sig = secrets.token_hex(8)
        with LOCK:
            SIGNATURES[sig] = time.monotonic() + ARGS.ttl
        location = f"http://127.0.0.1:{STORAGE_PORT}/blob/{m.group(2)}?sig={sig}"
        self.answer(307, b"", [("Location", location)])

    do_HEAD = do_GET


class Storage(Base):
    def do_GET(self):
        count("storage_requests")
        if "Authorization" in self.headers:
            count("storage_auth_leaks")
            return self.answer(400, b"Authorization sent to blob storage")
        url = urllib.parse.urlsplit(self.path)
        m = re.fullmatch(r"/blob/(sha256:[0-9a-f]{64})", url.path)
        path = os.path.join(ARGS.blobs, m.group(1)) if m else ""
        if not m or not os.path.isfile(path):
            return self.answer(404, b"not found")
        sig = urllib.parse.parse_qs(url.query).get("sig", [""])[0]
        with LOCK:
            signed = SIGNATURES.get(sig, 0) > time.monotonic()
        if not signed:
            count("storage_expired")
            return self.answer(403, b"signature expired")
        size = os.path.getsize(path)
        start, end = 0, size - 1
        rng = self.headers.get("Range")
        code = 200
        if rng:
            r = re.fullmatch(r"bytes=(\d+)-(\d+)", rng)
            if not r or int(r.group(1)) > int(r.group(2)) or int(r.group(1)) >= size:
                return self.answer(416, b"", [("Content-Range", f"bytes */{size}")])
            start, end, code = int(r.group(1)), min(int(r.group(2)), size - 1), 206
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        headers = [("Content-Type", "application/octet-stream")]
        if code == 206:
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        if self.command == "HEAD":
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            return None
        return self.answer(code, body, headers)

    do_HEAD = do_GET


def main():
    global ARGS, REG_PORT, STORAGE_PORT
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blobs", required=True, help="directory of files named by digest")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--user", default="ovbd")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--ttl", type=int, default=300, help="token lifetime in seconds")
    ap.add_argument("--port-file", required=True)
    ARGS = ap.parse_args()
    registry = Server(("127.0.0.1", 0), Registry)
    storage = Server(("127.0.0.1", 0), Storage)
    REG_PORT, STORAGE_PORT = registry.server_address[1], storage.server_address[1]
    threading.Thread(target=storage.serve_forever, daemon=True).start()
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{REG_PORT} {STORAGE_PORT}\n")
    os.rename(tmp, ARGS.port_file)
    try:
        registry.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
