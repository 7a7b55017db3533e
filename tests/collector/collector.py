"""A stub usage collector for the integration tests: it records every POST and answers as told.

    collector.py [--status 200] [--fail-first N] [--delay-ms D]

Prints `listening on 127.0.0.1:PORT` once it accepts connections. A POST to `/v1/logs` is parsed
as an OTLP `ExportLogsServiceRequest`, one to `/v1/traces` as an `ExportTraceServiceRequest`, with
the official protobuf types (`opentelemetry-proto`, protobuf's `json_format`, strict: an unknown
field is an error), as an OpenTelemetry Collector would; a body that does not parse is answered
400, like the Collector does. OTLP/JSON writes trace and span ids as hex, not as the base64 of
protobuf's JSON mapping: like the Collector, the ids are read as hex of exactly 16 or 8 bytes
(anything else is a parse error), and the parsed dict shows them as hex again. Any other POST must
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
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import base64

# OTLP/JSON id fields and their length in bytes.
ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}
MESSAGES = {"/v1/logs": ExportLogsServiceRequest, "/v1/traces": ExportTraceServiceRequest}


def ids(value, to_proto):
    """Walk a decoded OTLP/JSON message and re-encode its id fields: hex to protobuf-JSON base64
    (`to_proto`), or back to hex. An id that is not hex of its exact length is an error; an empty
    one means unset (OTLP's parentSpanId of a root span)."""
    if isinstance(value, list):
        return [ids(v, to_proto) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        if k in ID_FIELDS and isinstance(v, str) and v:
            if to_proto:
                raw = bytes.fromhex(v) if len(v) == 2 * ID_FIELDS[k] and v == v.lower() else None
                if raw is None:
                    raise ValueError(f"{k} {v!r} is not {ID_FIELDS[k]} bytes of lowercase hex")
                out[k] = base64.b64encode(raw).decode()
            else:
                out[k] = base64.b64decode(v).hex()
        else:
            out[k] = ids(v, to_proto)
    return out


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
                if self.path in MESSAGES:
                    proto = json.dumps(ids(json.loads(text), True))
                    msg = json_format.Parse(proto, MESSAGES[self.path]())
                    entry["otlp"] = ids(json_format.MessageToDict(msg), False)
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
