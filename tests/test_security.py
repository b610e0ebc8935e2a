"""Server-side request forgery: image URLs never reach loopback / private / link-local hosts.

Every test runs real HTTP servers on loopback addresses that record each request they get. A
"public" host is simulated by injecting the resolver and the address policy: 127.0.0.2 plays
the public internet, 127.0.0.1 the private network that must never be reached.
"""

from __future__ import annotations

import http.server
import io
import ipaddress
import threading

import pytest
from PIL import Image

from riveg_hf.images import ImageLoadError, load_image
from riveg_hf.net import URLFetchError, fetch_url, is_public_address

PUBLIC = ipaddress.ip_address("127.0.0.2")


@pytest.fixture(scope="module")
def tiny_pipe(dummy_dir):
    from riveg_hf import RiVEGPipeline

    return RiVEGPipeline.from_components(recognizer=dummy_dir["recognizer"], grounder=dummy_dir["grounder"])


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


class Recorder:
    """A threaded HTTP server on ``host`` whose routes are ``{path: (status, headers, body)}``."""

    def __init__(self, host: str, routes: dict[str, tuple[int, dict[str, str], bytes]] | None = None):
        self.requests: list[str] = []
        self.routes = routes or {}
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                rec.requests.append(self.path)
                status, headers, body = rec.routes.get(self.path, (404, {}, b"nope"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if callable(body):
                    self.end_headers()
                    body(self.wfile)
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.handle_error = lambda request, address: None  # clients that hang up (the byte cap)
        self.port = self.server.server_address[1]
        self.base = f"http://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def internal():
    """The private service an attacker wants to reach (cloud metadata, an admin port ...)."""
    srv = Recorder("127.0.0.1", {"/secret": (200, {"Content-Type": "image/png"}, _png_bytes())})
    yield srv
    srv.close()


@pytest.fixture
def public(internal):
    """The 'public' host: serves an image, and redirects into the private network."""
    srv = Recorder("127.0.0.2")
    srv.routes.update(
        {
            "/ok.png": (200, {"Content-Type": "image/png"}, _png_bytes()),
            "/to-internal": (302, {"Location": f"{internal.base}/secret"}, b""),
            "/to-localhost": (302, {"Location": f"http://localhost:{internal.port}/secret"}, b""),
            "/to-ipv6": (302, {"Location": f"http://[::1]:{internal.port}/secret"}, b""),
            "/to-mapped": (302, {"Location": f"http://[::ffff:127.0.0.1]:{internal.port}/secret"}, b""),
            "/chain": (302, {"Location": "/chain2"}, b""),
            "/chain2": (301, {"Location": f"{internal.base}/secret"}, b""),
            "/html": (200, {"Content-Type": "text/html"}, b"<html></html>"),
            "/loop": (302, {"Location": "/loop"}, b""),
        }
    )
    yield srv
    srv.close()


def _resolver(host, port):
    return {"public.test": ["127.0.0.2"], "localhost": ["127.0.0.1"]}.get(host, [host.strip("[]")])


def _only_public_test_host(ip):
    return ip == PUBLIC


@pytest.mark.parametrize(
    ("address", "public_"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:169.254.169.254", False),
        ("::127.0.0.1", False),  # IPv4-compatible
        ("2002:7f00:0001::", False),  # 6to4 of 127.0.0.1
        ("::ffff:8.8.8.8", True),
    ],
)
def test_address_policy(address, public_):
    assert is_public_address(address) is public_


def test_direct_loopback_url_is_refused_and_never_contacted(internal):
    with pytest.raises(URLFetchError) as err:
        fetch_url(f"{internal.base}/secret")  # the real resolver and the real policy
    assert "non-public" in err.value.reason
    with pytest.raises(URLFetchError):
        fetch_url(f"http://localhost:{internal.port}/secret")
    assert internal.requests == []


@pytest.mark.parametrize("path", ["/to-internal", "/to-localhost", "/to-ipv6", "/to-mapped", "/chain"])
def test_redirect_into_the_private_network_is_refused(public, internal, path):
    with pytest.raises(URLFetchError):
        fetch_url(
            f"http://public.test:{public.port}{path}",
            resolver=_resolver,
            address_allowed=_only_public_test_host,
        )
    assert public.requests[0] == path  # the allowed host was asked ...
    assert internal.requests == []  # ... but nothing ever reached the private one


def test_redirect_into_the_private_network_is_refused_by_the_default_policy(public, internal):
    """Same, with the default policy: only the first hop is waived (as if public.test were public)."""
    calls = []

    def policy(ip):
        calls.append(str(ip))
        return ip == PUBLIC or is_public_address(ip)

    with pytest.raises(URLFetchError):
        fetch_url(f"http://public.test:{public.port}/to-internal", resolver=_resolver, address_allowed=policy)
    assert calls == ["127.0.0.2", "127.0.0.1"] and internal.requests == []


def test_allowed_public_image_is_fetched(public):
    data = fetch_url(
        f"http://public.test:{public.port}/ok.png", resolver=_resolver, address_allowed=_only_public_test_host
    )
    assert Image.open(io.BytesIO(data)).size == (32, 24)
    assert public.requests == ["/ok.png"]


def test_dns_is_resolved_once_per_hop_and_the_checked_address_is_used(public, internal):
    """DNS rebinding: a second answer pointing at 127.0.0.1 is never asked for, never used."""
    answers = iter([["127.0.0.2"], ["127.0.0.1"]])
    data = fetch_url(
        f"http://rebind.test:{public.port}/ok.png",
        resolver=lambda host, port: next(answers),
        address_allowed=_only_public_test_host,
    )
    assert data and public.requests == ["/ok.png"] and internal.requests == []


def test_every_failure_gives_the_same_message(public, internal):
    """Closed port, HTTP 404, refused private host, not an image, too many redirects: one message."""
    closed = Recorder("127.0.0.2")
    closed_port = closed.port
    closed.close()
    kw = {"resolver": _resolver, "address_allowed": _only_public_test_host, "timeout": 2.0}
    urls = [
        f"http://public.test:{closed_port}/x",  # closed port
        f"http://public.test:{public.port}/missing",  # 404
        f"http://public.test:{public.port}/to-internal",  # refused redirect
        f"http://public.test:{public.port}/html",  # not an image
        f"http://public.test:{public.port}/loop",  # redirect loop
        "http://no-such-host.invalid/x",  # DNS failure
        "ftp://public.test/x",  # scheme
        f"http://user:pw@public.test:{public.port}/ok.png",  # credentials
    ]
    messages, reasons = set(), []
    for url in urls:
        with pytest.raises(URLFetchError) as err:
            fetch_url(url, **{**kw, "resolver": _resolver if "invalid" not in url else None})
        messages.add(str(err.value))
        reasons.append(err.value.reason)
    assert len(messages) == 1, messages
    assert len(set(reasons)) == len(urls)  # the logs still tell them apart
    assert internal.requests == []


def test_byte_cap_is_enforced_while_streaming(public):
    def endless(wfile):  # no Content-Length: a server that never stops sending
        for _ in range(1000):
            wfile.write(b"\x89PNG" + b"\0" * 65532)

    public.routes["/big"] = (200, {"Content-Type": "image/png"}, endless)
    with pytest.raises(URLFetchError) as err:
        fetch_url(
            f"http://public.test:{public.port}/big",
            resolver=_resolver,
            address_allowed=_only_public_test_host,
            max_bytes=100_000,
        )
    assert "larger than 100000" in err.value.reason


def test_load_image_refuses_urls_unless_enabled(internal):
    with pytest.raises(ImageLoadError, match="image URLs are off"):
        load_image(f"{internal.base}/secret")
    with pytest.raises(URLFetchError):
        load_image(f"{internal.base}/secret", allow_urls=True)
    assert internal.requests == []


def test_pipeline_refuses_url_images_by_default_and_private_ones_when_enabled(tiny_pipe, internal):
    url = f"{internal.base}/secret"
    out = tiny_pipe([{"text": "Obama visits Paris", "image": url}])
    assert "error" in out[0] and "image URLs are off" in out[0]["error"]
    out = tiny_pipe([{"text": "Obama visits Paris", "image": url}], allow_url_images=True)
    assert "error" in out[0] and "could not fetch the image URL" in out[0]["error"]
    assert internal.requests == []
    with pytest.raises(ValueError, match="allow_url_images must be True or False"):
        tiny_pipe("x", allow_url_images="yes")


@pytest.mark.parametrize("fault", ["drip-headers", "drip-body"])
def test_one_deadline_for_the_whole_fetch_even_when_the_host_drips(fault):
    """A host that sends a byte every 0.2 s never lets a read time out; the fetch still ends at its deadline
    (round 2 of the hardening: the deadline used to be checked only between 64 KiB reads)."""
    import time

    from .servers import ChatServer, Reply

    body = _png_bytes() * 20
    with ChatServer(lambda req, h: Reply(200, raw=body, headers={"Content-Type": "image/png"}, fault=fault,
                                         drip=0.2)) as srv:  # fmt: skip
        t0 = time.monotonic()
        with pytest.raises(URLFetchError) as err:
            fetch_url(f"{srv.base}/img.png", timeout=1.5, address_allowed=lambda ip: True)
        took = time.monotonic() - t0
    assert "timed out" in err.value.reason and took < 2.5, (err.value.reason, took)
