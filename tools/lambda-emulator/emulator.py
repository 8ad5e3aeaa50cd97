#!/usr/bin/env python3
"""A small emulator of the AWS Lambda Runtime API fronted by an API Gateway HTTP API (v2).

It runs real Lambda function binaries (custom runtime, `provided.al2023` style: the binary
is the bootstrap) and serves plain HTTP: each request is matched to a function by its routes,
turned into an API Gateway v2 event, handed to that function through the Runtime API
(`/2018-06-01/runtime/invocation/next`, `…/response`, `…/error`, `/runtime/init/error`), and
the function's response is turned back into HTTP. Like Lambda, one process handles one
invocation at a time and is started on first use (a cold start, which is measured: process
spawn → first response posted).

Standard library only. Usage:

    emulator.py CONFIG.json

CONFIG: {"listen": "127.0.0.1:0",
         "env": {"VAR": "value", ...},                 # given to every function
         "functions": {"NAME": {"bin": "/path/to/binary",
                                "routes": ["POST /v1/auth/login", "GET /v1/groups/{id}", ...]}}}

It prints `lambda emulator listening on http://HOST:PORT` once ready. `GET /__emulator/stats`
returns each function's cold start (ms), invocation count and errors as JSON.
"""

import base64
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

RUNTIME = "/2018-06-01/runtime"
INVOCATION_TIMEOUT = 60.0


class Function:
    """One function: its binary, its Runtime API endpoint and its (single) process."""

    def __init__(self, name, binary, env):
        self.name = name
        self.binary = binary
        self.env = env
        self.lock = threading.Lock()  # one invocation at a time, as on Lambda
        self.pending = queue.Queue()  # events waiting for /next
        self.results = {}  # request id -> (kind, body)
        self.done = threading.Condition()
        self.process = None
        self.spawned_at = None
        self.cold_start_ms = None
        self.invocations = 0
        self.errors = 0
        self.init_error = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.runtime_handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def runtime_handler(self):
        fn = self

        class Runtime(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"", headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != RUNTIME + "/invocation/next":
                    return self.reply(404)
                request_id, event, deadline = fn.pending.get()
                self.reply(200, event, {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn": f"arn:aws:lambda:eu-west-1:123456789012:function:{fn.name}",
                    "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
                })

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                m = re.fullmatch(RUNTIME + r"/invocation/([^/]+)/(response|error)", self.path)
                if m:
                    with fn.done:
                        fn.results[m.group(1)] = (m.group(2), body)
                        fn.done.notify_all()
                    return self.reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})
                if self.path == RUNTIME + "/init/error":
                    fn.init_error = body.decode("utf-8", "replace")
                    with fn.done:
                        fn.done.notify_all()
                    return self.reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})
                return self.reply(404)

        return Runtime

    def ensure_started(self):
        if self.process is not None and self.process.poll() is None:
            return
        env = dict(os.environ)
        env.update(self.env)
        env.update({
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.server.server_address[1]}",
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": uuid.uuid4().hex,
            "AWS_REGION": env.get("AWS_REGION", "eu-west-1"),
        })
        self.init_error = None
        self.cold_start_ms = None
        self.spawned_at = time.monotonic()
        self.process = subprocess.Popen([self.binary], env=env, stdout=sys.stderr, stderr=sys.stderr)

    def invoke(self, event):
        """Runs one event; returns ('response'|'error', body bytes)."""
        with self.lock:
            self.ensure_started()
            request_id = str(uuid.uuid4())
            deadline = int(time.time() * 1000 + INVOCATION_TIMEOUT * 1000)
            self.pending.put((request_id, json.dumps(event).encode(), deadline))
            end = time.monotonic() + INVOCATION_TIMEOUT
            with self.done:
                while request_id not in self.results:
                    if self.init_error is not None:
                        return "error", json.dumps({"errorType": "InitError", "errorMessage": self.init_error}).encode()
                    if self.process.poll() is not None:
                        return "error", json.dumps({"errorType": "ProcessExited", "errorMessage": f"exit code {self.process.returncode}"}).encode()
                    if time.monotonic() > end:
                        return "error", b'{"errorType":"Timeout"}'
                    self.done.wait(0.05)
                kind, body = self.results.pop(request_id)
            if self.cold_start_ms is None:
                self.cold_start_ms = round((time.monotonic() - self.spawned_at) * 1000, 2)
            self.invocations += 1
            if kind == "error":
                self.errors += 1
            return kind, body

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def compile_route(spec):
    method, pattern = spec.split(" ", 1)
    names = re.findall(r"\{([^}/]+)\}", pattern)
    regex = "^" + re.sub(r"\\\{[^}/]+\\\}", "([^/]+)", re.escape(pattern)) + "$"
    return method.upper(), pattern, re.compile(regex), names


class Gateway:
    def __init__(self, config):
        env = config.get("env", {})
        self.functions = {}
        self.routes = []
        for name, spec in config["functions"].items():
            self.functions[name] = Function(name, spec["bin"], env)
            for r in spec["routes"]:
                self.routes.append((compile_route(r), name))

    def match(self, method, path):
        for (m, pattern, regex, names), fn in self.routes:
            hit = regex.match(path)
            if hit and m == method:
                return fn, f"{m} {pattern}", dict(zip(names, hit.groups()))
        return None


def handler_for(gw):
    class Front(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body, headers=()):
            self.send_response(status)
            sent = set()
            for k, v in headers:
                if k.lower() in ("content-length", "transfer-encoding", "connection"):
                    continue
                self.send_header(k, v)
                sent.add(k.lower())
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def handle_any(self):
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if url.path == "/__emulator/stats":
                stats = {n: {"cold_start_ms": f.cold_start_ms, "invocations": f.invocations, "errors": f.errors}
                         for n, f in gw.functions.items()}
                return self.reply(200, json.dumps(stats).encode(), [("Content-Type", "application/json")])
            found = gw.match(self.command, url.path)
            if found is None:
                return self.reply(404, b'{"message":"Not Found"}', [("Content-Type", "application/json")])
            name, route_key, params = found
            headers = {}
            for k, v in self.headers.items():
                k = k.lower()
                headers[k] = f"{headers[k]},{v}" if k in headers else v
            now = time.time()
            event = {
                "version": "2.0",
                "routeKey": route_key,
                "rawPath": url.path,
                "rawQueryString": url.query,
                "headers": headers,
                "requestContext": {
                    "accountId": "123456789012",
                    "apiId": "emulator",
                    "domainName": headers.get("host", "localhost"),
                    "domainPrefix": "emulator",
                    "http": {
                        "method": self.command,
                        "path": url.path,
                        "protocol": "HTTP/1.1",
                        "sourceIp": self.client_address[0],
                        "userAgent": headers.get("user-agent", ""),
                    },
                    "requestId": uuid.uuid4().hex,
                    "routeKey": route_key,
                    "stage": "$default",
                    "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                    "timeEpoch": int(now * 1000),
                },
                "isBase64Encoded": bool(body),
            }
            if url.query:
                event["queryStringParameters"] = dict(parse_qsl(url.query, keep_blank_values=True))
            if params:
                event["pathParameters"] = params
            if "cookie" in headers:
                event["cookies"] = [c.strip() for c in headers["cookie"].split(";")]
            if body:
                event["body"] = base64.b64encode(body).decode()
            kind, raw = gw.functions[name].invoke(event)
            if kind == "error":
                return self.reply(502, b'{"message":"Internal Server Error"}', [("Content-Type", "application/json")])
            resp = json.loads(raw or b"{}")
            out = resp.get("body") or ""
            out = base64.b64decode(out) if resp.get("isBase64Encoded") else out.encode()
            hdrs = list((resp.get("headers") or {}).items())
            for k, vs in (resp.get("multiValueHeaders") or {}).items():
                hdrs.extend((k, v) for v in vs)
            hdrs.extend(("Set-Cookie", c) for c in resp.get("cookies") or [])
            return self.reply(int(resp.get("statusCode", 200)), out, hdrs)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    return Front


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        config = json.load(f)
    gw = Gateway(config)
    host, port = config.get("listen", "127.0.0.1:0").rsplit(":", 1)
    front = ThreadingHTTPServer((host, int(port)), handler_for(gw))
    print(f"lambda emulator listening on http://{host}:{front.server_address[1]}", flush=True)
    try:
        front.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for fn in gw.functions.values():
            fn.stop()


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    main()
