#!/usr/bin/env python3
"""Tiny receiver for capture-journal-fixtures.sh: answers each PUT with the
status named by the episode id's prefix (`s412-...` → 412, `ok-...` → 201).
Prints its port on stdout, then serves until killed."""
import http.server
import sys

BODIES = {
    400: b"missing commit: episode has no commit.txt",
    401: b"bad bearer token",
    412: b"episode not in collector window (2026-01-01T00:00Z..2026-01-02T00:00Z)",
    503: b"receiver is busy",
}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        length = int(self.headers.get("Content-Length", "0"))
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)
        episode = self.path.rsplit("/", 1)[-1]
        status = 201
        if episode.startswith("s") and episode[1:4].isdigit():
            status = int(episode[1:4])
        body = BODIES.get(status, b"")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
