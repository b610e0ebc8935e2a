"""Local servers on 127.0.0.1 for the tests: an OpenAI-compatible chat server whose behaviour each test
scripts (answers, faults, slow drips), recording every request it receives."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Any


def completion(text: str | None, *, logprobs: list | None = None, finish_reason: str = "stop") -> dict:
    """A chat.completion body in the shape vLLM / TGI / OpenAI return."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason,
                              "message": {"role": "assistant", "content": text}}  # fmt: skip
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "test",
        "choices": [choice],
    }


class Reply:
    """What the server does for one request: a status + JSON/bytes body, or a fault."""

    def __init__(self, status: int = 200, body: Any = None, *, raw: bytes | None = None,
                 headers: dict[str, str] | None = None, fault: str | None = None, delay: float = 0.0,
                 drip: float = 0.0):  # fmt: skip
        self.status, self.body, self.raw, self.fault = status, body, raw, fault
        self.headers = dict(headers or {})
        self.delay, self.drip = delay, drip


class ChatServer:
    """``ChatServer(handler)``: ``handler(request_json, headers) -> Reply`` per request (default: echo).

    Faults (``Reply(fault=...)``): ``"drip-headers"`` (one byte of the status line / headers every
    ``drip`` s), ``"drip-body"``, ``"close-mid-body"``, ``"reset"``, ``"garbage-status"``, ``"endless"``
    (a body that never ends, chunked), ``"close"`` (accept then close without a byte).
    """

    def __init__(self, handler: Callable[[dict, dict], Reply] | None = None):
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.in_flight = self.max_in_flight = 0
        self.handler = handler or (lambda req, hdr: Reply(200, completion("ok")))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        srv = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                srv._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + "/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # ------------------------------------------------------------------ protocol
    def _read_request(self, sock: socket.socket) -> tuple[str, dict[str, str], bytes] | None:
        sock.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0") or 0)
        while len(body) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return path, headers, body

    def _handle(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            got = self._read_request(sock)
            if got is None:
                return
            path, headers, body = got
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                req = {"_raw": body.decode("latin-1")}
            with self._lock:
                self.requests.append(req)
                self.headers.append(headers)
                self.paths.append(path)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                reply = self.handler(req, headers)
                if reply.delay:
                    time.sleep(reply.delay)
                if not self._send(sock, reply):
                    return
            finally:
                with self._lock:
                    self.in_flight -= 1

    def _send(self, sock: socket.socket, r: Reply) -> bool:
        """Write the reply; False when the connection must end after it."""
        if r.fault == "close":
            sock.close()
            return False
        if r.fault == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
            return False
        if r.fault == "garbage-status":
            sock.sendall(b"HTTQ/9.9 abc nonsense\r\n\r\n")
            sock.close()
            return False
        payload = r.raw if r.raw is not None else json.dumps(r.body if r.body is not None else {}).encode()
        reason = {200: "OK", 302: "Found", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
                  500: "Internal Server Error", 503: "Service Unavailable"}.get(r.status, "Status")  # fmt: skip
        head = f"HTTP/1.1 {r.status} {reason}\r\n"
        hdrs = {"Content-Type": "application/json", **r.headers}
        if r.fault == "endless":
            hdrs["Transfer-Encoding"] = "chunked"
        else:
            hdrs["Content-Length"] = str(len(payload))
        head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        try:
            if r.fault == "drip-headers":
                for b in head.encode():
                    if self._stop.is_set():
                        return False
                    sock.sendall(bytes([b]))
                    time.sleep(r.drip or 1.0)
                sock.sendall(payload)
                return True
            sock.sendall(head.encode())
            if r.fault == "drip-body":
                for b in payload:
                    if self._stop.is_set():
                        return False
                    sock.sendall(bytes([b]))
                    time.sleep(r.drip or 1.0)
                return True
            if r.fault == "close-mid-body":
                sock.sendall(payload[: len(payload) // 2])
                sock.close()
                return False
            if r.fault == "endless":
                chunk = b"[" * 4096
                while not self._stop.is_set():
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                return False
            sock.sendall(payload)
            return True
        except OSError:
            return False

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
