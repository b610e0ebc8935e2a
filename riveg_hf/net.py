"""Fetching an image URL that came from a request, without becoming a proxy into private networks.

URL images are **off** unless a caller enables them (``allow_urls=True`` in
:func:`riveg_hf.images.load_image`, ``allow_url_images=True`` in the pipeline,
``--allow-url-images`` in the CLI, ``RIVEG_ALLOW_URL_IMAGES=1`` for the endpoint handler).
When enabled, :func:`fetch_url` applies this policy:

* only ``http`` and ``https``, no user info in the URL, ports from 1 to 65535;
* the host is resolved **once per hop**; every address it resolves to must be public
  (:func:`is_public_address`: not loopback, private, link-local -- cloud metadata
  169.254.169.254 --, multicast, reserved, unspecified, shared, documentation, nor an
  IPv4-mapped / 6to4 / Teredo IPv6 form of those), and the connection goes to that same
  address (the ``Host`` header and TLS server name stay the URL's), so a DNS answer that
  changes between the check and the connection (rebinding) cannot reach another host;
* redirects are followed by hand, at most :data:`MAX_REDIRECTS`, and **every hop** is checked
  the same way before it is contacted;
* **one deadline for the whole fetch** (``timeout``, 5 s by default, every hop, headers and body
  together), enforced while reading: at the deadline the socket is shut down, so a host that drips one
  byte a second cannot hold a worker past it (:class:`Watchdog`); a byte cap enforced while the body
  streams (``Content-Length`` is not trusted), and a ``Content-Type`` that must be ``image/*``;
* every failure -- refused address, DNS failure, closed port, timeout, HTTP error, wrong type,
  too large -- raises the same :class:`URLFetchError` with the same message, so the answers
  cannot be used to map which internal hosts and ports exist. The reason is kept on the
  exception (``err.reason``) for logs only.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import urljoin, urlsplit

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "HUB_HOST",
    "MAX_REDIRECTS",
    "URLFetchError",
    "Watchdog",
    "fetch_url",
    "hub_endpoint_for_token",
    "is_public_address",
]

#: redirects a fetch follows (each one checked like the first request)
MAX_REDIRECTS = 3
#: seconds a fetch may take to connect and between reads, unless the caller sets another
DEFAULT_TIMEOUT = 5.0
#: the largest body a fetch reads (counted while it decodes, so a gzip bomb stops here)
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
#: The one message every failed fetch gives (see the module doc).
FETCH_ERROR_MESSAGE = (
    "could not fetch the image URL: it must be a public http(s) address serving an image (image/*) "
    "of at most {max_bytes:,} bytes within {timeout:g} s; send the image bytes (base64) instead"
)

Resolver = Callable[[str, int], Sequence[str]]
AddressPolicy = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]


class URLFetchError(ValueError):
    """A URL image that could not be fetched. ``str(err)`` is uniform; ``err.reason`` says why (logs only)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


_NON_PUBLIC_V4 = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT (shared)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
]


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> bool:
    """True only for a globally routable unicast address.

    >>> [is_public_address(a) for a in ("8.8.8.8", "127.0.0.1", "169.254.169.254", "::ffff:10.0.0.1")]
    [True, False, False, False]
    """
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if embedded is not None:
                return is_public_address(embedded)
        if ip.ipv4_mapped is None and ip.packed[:12] == bytes(12):  # IPv4-compatible ::a.b.c.d
            return False
        return bool(ip.is_global) and not (
            ip.is_multicast or ip.is_link_local or ip.is_site_local or ip.is_private or ip.is_reserved
        )
    if any(ip in net for net in _NON_PUBLIC_V4):
        return False
    return bool(ip.is_global) and not ip.is_multicast


class Watchdog:
    """Shuts ``conn.sock`` down at ``deadline`` (``time.monotonic()``), so that a blocking read -- of the
    status line, the headers or the body -- returns at once however slowly the peer sends.

    >>> with Watchdog(conn, time.monotonic() + 5) as dog:  # doctest: +SKIP
    ...     resp = conn.getresponse(); data = resp.read()
    ... if dog.fired.is_set(): raise TimeoutError
    """

    def __init__(self, conn: http.client.HTTPConnection, deadline: float):
        self.conn = conn
        self.fired = threading.Event()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired.set()
        sock = getattr(self.conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._timer.cancel()
        return False


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a fixed, already-checked address whatever the URL's host resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._ctx = context

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def fetch_url(
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT,
    resolver: Resolver | None = None,
    address_allowed: AddressPolicy | None = None,
    max_redirects: int = MAX_REDIRECTS,
) -> bytes:
    """Download an image URL under the policy of the module doc; return its bytes.

    ``resolver(host, port) -> [ip, ...]`` and ``address_allowed(ip) -> bool`` default to the
    system resolver and :func:`is_public_address`; tests inject them.
    """
    resolve = resolver or _system_resolver
    allowed = address_allowed or is_public_address
    message = FETCH_ERROR_MESSAGE.format(max_bytes=max_bytes, timeout=timeout)
    deadline = time.monotonic() + timeout  # the whole fetch: every hop, headers and body

    def fail(reason: str) -> URLFetchError:
        return URLFetchError(message, reason)

    current = url
    for _hop in range(max_redirects + 1):
        parts = urlsplit(current)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise fail(f"scheme {parts.scheme!r} is not http(s)")
        if parts.username is not None or parts.password is not None:
            raise fail("user info in the URL")
        host = parts.hostname
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise fail("invalid port") from None
        if not host or not 0 < port < 65536:
            raise fail("no host or invalid port")
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host, port)]
        except (OSError, ValueError, UnicodeError) as err:
            raise fail(f"cannot resolve {host!r}: {err}") from None
        if not addresses:
            raise fail(f"{host!r} resolves to nothing")
        bad = [str(a) for a in addresses if not allowed(a)]
        if bad:
            raise fail(f"{host!r} resolves to a non-public address {bad[0]}")
        address = str(addresses[0])
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise fail("timed out")
        if scheme == "https":
            conn: http.client.HTTPConnection = _PinnedHTTPSConnection(
                host, port, address, remaining, ssl.create_default_context()
            )
        else:
            conn = _PinnedHTTPConnection(host, port, address, remaining)
        dog = Watchdog(conn, deadline)
        try:
            with dog:
                data = _get(conn, path, current, max_bytes, fail)
            if dog.fired.is_set():
                raise fail("timed out (the whole fetch has one deadline)")
            if isinstance(data, str):  # a redirect
                current = data
                continue
            return data
        except URLFetchError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as err:
            if dog.fired.is_set():
                raise fail("timed out (the whole fetch has one deadline)") from None
            raise fail(f"{type(err).__name__}: {err}") from None
        finally:
            conn.close()
    raise fail(f"more than {max_redirects} redirects")


def _get(conn, path: str, current: str, max_bytes: int, fail) -> bytes | str:
    """One GET on an open pinned connection -> the body, or the next URL of a redirect."""
    conn.request("GET", path, headers={"User-Agent": "riveg-hf", "Accept": "image/*"})
    resp = conn.getresponse()
    if resp.status in (301, 302, 303, 307, 308):
        location = resp.getheader("Location")
        if not location:
            raise fail(f"redirect {resp.status} without Location")
        return urljoin(current, location)
    if resp.status != 200:
        raise fail(f"HTTP {resp.status}")
    ctype = (resp.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
    if not ctype.startswith("image/"):
        raise fail(f"content type {ctype!r} is not image/*")
    chunks, total = [], 0
    while True:
        chunk = resp.read1(64 * 1024)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise fail(f"body larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------- where a Hub token may go
#: the only host (and its subdomains) a Hub token is sent to, over https
HUB_HOST = "huggingface.co"


def hub_endpoint_for_token(endpoint: str | None = None) -> str:
    """The Hub endpoint a token may be sent to: ``endpoint``, else ``huggingface_hub``'s (``HF_ENDPOINT``).

    Raises ValueError unless it is ``https://huggingface.co`` or ``https://<sub>.huggingface.co`` on the default
    port with no credentials in it (see the module doc)."""
    if endpoint is None:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    where = "HF_ENDPOINT" if os.environ.get("HF_ENDPOINT") == endpoint else "the Hub endpoint"
    try:
        parts = urlsplit(str(endpoint))
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        parts, host, port = None, "", -1
    ok = (
        parts is not None
        and parts.scheme == "https"
        and (host == HUB_HOST or host.endswith("." + HUB_HOST))
        and port in (None, 443)
        and not parts.username
        and not parts.password
    )
    if not ok:
        raise ValueError(
            f"{where} is {endpoint!r}: a Hub token is only sent over https to {HUB_HOST} (or *.{HUB_HOST}), "
            f"so it was not sent. Unset HF_ENDPOINT (or set it to https://{HUB_HOST}) to reach the Hub."
        )
    return str(endpoint).rstrip("/")
