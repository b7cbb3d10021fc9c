"""A webhook receiver for the tests: ``python receiver.py PORT LOG FAIL_FIRST``.

Appends every POST (headers of interest and JSON body) to LOG as one JSON line with
the status it answered; answers 500 to the first FAIL_FIRST posts, then 204.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    port, log, fail_first = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    seen = 0

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            nonlocal seen
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            seen += 1
            status = 500 if seen <= fail_first else 204
            entry = {"status": status, "idempotency_key": self.headers.get("Idempotency-Key"),
                     "content_type": self.headers.get("Content-Type"),
                     "body": json.loads(body)}
            with log.open("a") as out:
                out.write(json.dumps(entry) + "\n")
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
