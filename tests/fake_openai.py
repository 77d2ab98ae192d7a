"""A chat-completions server on 127.0.0.1 for tests and the benchmark (standard library only).

It speaks `POST /v1/chat/completions` like OpenAI-compatible servers do, answers valid GENRE answers by
default (or whatever `reply` returns), waits `latency` seconds per request, and injects faults chosen by
`faults(key, n)` for the n-th request (1-based) with a given key (the first user message, i.e. the item or
user asked about): `429` (with Retry-After), `500`, `hang` (no answer for `hang_seconds`), `drop` (the
connection is closed without an answer), `bad_body` (a response that is not JSON), `bad_content` (an answer
that is not the task's JSON), `echo_auth` (a 200 page that is not JSON, quoting the Authorization header),
`quote_auth` (a 400 whose error message quotes it); `echo_auth@N` / `quote_auth@N` put N characters before the
quote (to test the cuts of quoted text). It counts requests per key, so tests can tell whether a request was
repeated.

Standalone (the benchmark runs it in its own process, so that it does not compete with the client for the
GIL): `python -m tests.fake_openai --latency 0.2` prints `READY <base url>` and serves until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Reply = Callable[[list[dict]], str]
Faults = Callable[[str, int], str | None]


def default_reply(messages: list[dict]) -> str:
    """A valid answer to any of the GENRE prompts, news or books (told apart by the JSON form their system
    prompt asks for), derived from the request so that answers differ between items and users."""
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    user = next((m["content"] for m in messages if m["role"] == "user"), "")
    options = re.findall(r"^- (.+)$", system, flags=re.M)
    if '"topics"' in system:
        return json.dumps({"topics": options[:2], "regions": ["New York"]})
    if '"interests"' in system:
        return json.dumps({"interests": ["fiction", "history"]})
    if '"shelf"' in system:
        read = re.findall(r"^\(\d+\) (.*)$", user, flags=re.M)
        like = read[-1] if read else "a good book"
        return json.dumps(
            {
                "title": f"The Return of {like}",
                "description": f"A sequel to {like}.",
                "shelf": options[0] if options else "fiction",
            }
        )
    if '"description"' in system:
        return json.dumps({"description": f"A book called {user.split(':', 1)[-1].strip()}."})
    if '"abstract"' in system:
        read = re.findall(r"^\(\d+\) \(([^)]*)\) (.*)$", user, flags=re.M)
        category = read[0][0] if read and read[0][0] in options else (options[0] if options else "news")
        topic = read[0][1] if read else "the news"
        return json.dumps(
            {"title": f"More on {topic}", "abstract": f"A follow-up to {topic}.", "category": category}
        )
    title = re.search(r"^Title: (.*)$", user, flags=re.M)
    return json.dumps({"title": f"Report: {title.group(1) if title else 'news'}"})


class FakeChatServer:
    def __init__(
        self,
        reply: Reply = default_reply,
        latency: float = 0.0,
        faults: Faults | None = None,
        hang_seconds: float = 3.0,
        retry_after: str = "1",
        api_key: str | None = None,
        port: int = 0,
    ):
        self.reply, self.latency, self.faults = reply, latency, faults
        self.hang_seconds, self.retry_after, self.api_key = hang_seconds, retry_after, api_key
        self.counts: Counter[str] = Counter()  # requests received per key
        self.answered: Counter[str] = Counter()  # valid 200 answers sent per key
        self.events: list[tuple[str, int, float, str]] = []  # (key, n, time, what was done)
        self.authorization: set[str] = set()  # Authorization headers seen
        self.last_messages: dict[str, list[dict]] = {}  # the latest conversation sent per key
        self.lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", port), _handler(self))
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> FakeChatServer:
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeChatServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _record(self, key: str) -> int:
        with self.lock:
            self.counts[key] += 1
            return self.counts[key]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512  # a burst of 128 new connections must not overflow the listen backlog


def _handler(server: FakeChatServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers
        # Headers and body leave in two writes: with Nagle's algorithm the body would wait for the client's
        # delayed ACK of the headers (40 ms a request on Linux).
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            request = json.loads(body)
            messages = request.get("messages", [])
            key = next((m["content"] for m in messages if m["role"] == "user"), "")
            auth = self.headers.get("Authorization", "")
            with server.lock:
                server.authorization.add(auth)
            if server.api_key is not None and auth != f"Bearer {server.api_key}":
                given = auth.removeprefix("Bearer ")
                # Like OpenAI, the message quotes the key it got: clients must not log it.
                return self._send(401, {"error": {"message": f"Incorrect API key provided: {given}"}})
            n = server._record(key)
            fault = server.faults(key, n) if server.faults else None
            fault, _, pad = fault.partition("@") if fault else (None, "", "")  # `@N`: N characters first
            padding = "." * int(pad or 0)
            with server.lock:
                server.events.append((key, n, time.time(), fault or "ok"))
                server.last_messages[key] = messages
            if server.latency:
                time.sleep(server.latency)
            if fault == "429":
                return self._send(
                    429, {"error": {"message": "rate limited"}}, {"Retry-After": server.retry_after}
                )
            if fault == "500":
                return self._send(500, {"error": {"message": "internal error"}})
            if fault in ("hang", "drop"):
                if fault == "hang":
                    time.sleep(server.hang_seconds)
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return None
            if fault == "bad_body":
                return self._send_raw(200, b'{"id": "x", "choices": [', "application/json")
            if fault == "echo_auth":  # a misbehaving proxy: a 200 page that quotes the request's headers
                return self._send_raw(200, f"<html>{padding}proxy: {auth}</html>".encode(), "text/html")
            if fault == "quote_auth":  # a rejected request whose error message quotes the headers
                return self._send(400, {"error": {"message": f"{padding}bad request from {auth}"}})
            text = "Sure! Here is the answer: title=???" if fault == "bad_content" else server.reply(messages)
            if fault is None:
                with server.lock:
                    server.answered[key] += 1
            prompt_tokens = sum(len(m["content"]) // 4 for m in messages)
            return self._send(
                200,
                {
                    "id": f"chatcmpl-{n}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request.get("model", "fake"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": len(text) // 4 + 1,
                        "total_tokens": prompt_tokens + len(text) // 4 + 1,
                    },
                },
            )

        def _send(self, status: int, obj: dict, headers: dict | None = None) -> None:
            self._send_raw(status, json.dumps(obj).encode(), "application/json", headers)

        def _send_raw(self, status: int, data: bytes, kind: str, headers: dict | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout) meanwhile
                self.close_connection = True

    return Handler


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="a local chat-completions server for tests and benchmarks")
    p.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args(argv)
    server = FakeChatServer(latency=a.latency, port=a.port)
    print(f"READY {server.url}", flush=True)
    try:
        server.httpd.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


if __name__ == "__main__":
    sys.exit(main())
