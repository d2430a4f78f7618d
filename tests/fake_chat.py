"""A fake OpenAI-compatible chat server on 127.0.0.1 (tests of the API backend and of the demo DAG)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESPONSE = '<think>[{"bbox_2d": [10, 20, 30, 40], "label": "spot"}]</think><rethink>real</rethink><answer>yes</answer>'


class FakeChat:
    """A chat completions endpoint: scripted failures, then answers; records what it receives."""

    def __init__(self, failures=(), delay=0.0, reply=RESPONSE):
        self.failures = list(failures)  # HTTP statuses of the first requests
        self.delay, self.reply = delay, reply
        self.requests, self.auth = [], []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append((self.path, body))
                    fake.auth.append(self.headers.get("Authorization"))
                    status = fake.failures.pop(0) if fake.failures else 200
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                time.sleep(fake.delay)
                with fake.lock:
                    fake.in_flight -= 1
                if status != 200:
                    payload = json.dumps({"error": f"status {status}; you sent {self.headers.get('Authorization')}"})
                else:
                    reply = fake.reply(body) if callable(fake.reply) else fake.reply
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]})
                data = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
