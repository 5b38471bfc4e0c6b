"""An auth hook for the gateway in 20 lines of standard library (docs/auth.md, README).

    python docs/examples/auth_hook.py 8081
    gateway run --auth-hook-url http://127.0.0.1:8081/
OBS: Server rtmp://HOST/live, Stream Key s3cr3t-alice -> viewers open /live/alice/.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STREAM_KEYS = {"s3cr3t-alice": "alice", "s3cr3t-bob": "bob"}  # secret key -> public name


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        ask = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if ask["action"] == "publish" and ask["key"] in STREAM_KEYS:
            status, answer = 200, {"name": STREAM_KEYS[ask["key"]]}
        elif ask["action"] == "read":
            status, answer = 200, {}  # everyone may watch (with read_auth = true)
        else:
            status, answer = 403, {"error": "not allowed"}
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Hook)
print(f"auth hook on http://127.0.0.1:{server.server_port}/", flush=True)
server.serve_forever()
