"""A stub usage collector for the integration tests: it records every POST and answers as told.

    collector.py [--status 200] [--fail-first N] [--delay-ms D]

Prints `listening on 127.0.0.1:PORT` once it accepts connections. A POST to `/v1/logs` is parsed
as an OTLP `ExportLogsServiceRequest` with the official protobuf types (`opentelemetry-proto`,
protobuf's `json_format`, strict: an unknown field is an error), as an OpenTelemetry Collector
would; a body that does not parse is answered 400, like the Collector does. Any other POST must
be JSON. The first `--fail-first` posts are answered 500 (and not recorded as accepted); after
that, posts get `--status`.

`GET /received` returns what was posted, in order:
`[{"path", "headers", "body", "status", "otlp": <the parsed message as a dict> | null,
"error": <why it did not parse> | null}]`.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--no-parse", action="store_true",
                    help="accept without parsing or recording (a sink that costs the bench little)")
    args = ap.parse_args()

    lock = threading.Lock()
    received = []
    posts = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the gateway gave up waiting (its timeout): nothing to answer

        def do_GET(self):
            if self.path != "/received":
                return self.reply(404, {"error": "not found"})
            with lock:
                snapshot = list(received)
            self.reply(200, snapshot)

        def do_POST(self):
            n = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(n) if n else b""
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                raw = self.read_chunked()
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)
            if args.no_parse:
                return self.reply(200, {"partialSuccess": {}})
            text = raw.decode("utf-8", "replace")
            entry = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": text,
                "otlp": None,
                "error": None,
            }
            try:
                if self.path == "/v1/logs":
                    msg = json_format.Parse(text, ExportLogsServiceRequest())
                    entry["otlp"] = json_format.MessageToDict(msg)
                else:
                    json.loads(text)
            except Exception as e:  # noqa: BLE001 - any parse failure is the client's fault
                entry["error"] = f"{type(e).__name__}: {e}"
            with lock:
                posts[0] += 1
                if entry["error"] is not None:
                    status = 400
                elif posts[0] <= args.fail_first:
                    status = 500
                else:
                    status = args.status
                entry["status"] = status
                received.append(entry)
            if status == 200:
                self.reply(200, {"partialSuccess": {}})
            else:
                self.reply(status, {"error": entry["error"] or "told to fail"})

        def read_chunked(self):
            out = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
