"""Outbound HTTP to URLs that users and operators set (judge endpoints, the alert webhook): one policy.

- `url_problem`: a URL with user-info, spaces or control characters (CR/LF), a non-numeric port or a
  scheme other than http/https is refused when it is set, with the reason.
- `OutboundPolicy.connect` (and `request`, one exchange over it): at call time the host is resolved and every address is checked. With no
  allowed host patterns (DRIFTBOARD_JUDGE_HOSTS empty) any host is reached whose addresses are all
  public; loopback, link-local (cloud metadata), private, shared and reserved addresses only for a
  host listed explicitly. With patterns, only hosts matching one (`host[:port]`, `*` as a wildcard).
- The connection is made to the address just checked, the Host header and TLS SNI still naming the
  host, so a DNS answer that changes between the check and the connect (rebinding) reaches nothing
  unchecked. Nothing here follows a redirect: callers see the 3xx.

Pure standard library apart from `judge_policy`, which reads the settings: the scoring package gets a
policy handed in (evals/apps.py), and registry uses it directly.
"""

import fnmatch
import http.client
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings

Resolver = Callable[[str, int], list[str]]


class OutboundRefused(PermissionError):
    """A URL or an address this server does not connect to (never retried)."""


def url_problem(url: str) -> str | None:
    """Why the URL may never be fetched, as the end of a sentence ("must …"), or None."""
    if any(ord(char) <= 32 or ord(char) == 127 for char in url):
        return "must not contain spaces or control characters (CR/LF)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it is what checks that the port is a number
    except ValueError:
        return "must have a numeric port from 0 to 65535"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if "@" in parts.netloc:
        return "must not contain user-info (user:password@)"
    if not parts.hostname:
        return "must name a host"
    return None


def resolve_host(host: str, port: int) -> list[str]:
    """Every address the host resolves to now (IPv4 and IPv6)."""
    return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _pattern_matches(pattern: str, host: str, port: int) -> bool:
    wanted_host, wanted_port = pattern.lower(), "*"
    if pattern.startswith("["):
        wanted_host, _, rest = pattern[1:].lower().partition("]")
        wanted_port = rest.removeprefix(":") or "*"
    elif pattern.count(":") == 1:
        wanted_host, wanted_port = pattern.lower().split(":")
    return fnmatch.fnmatchcase(host.lower(), wanted_host) and wanted_port in ("*", str(port))


@dataclass(frozen=True)
class OutboundPolicy:
    allowed_hosts: tuple[str, ...] = ()
    # Bytes a caller reads of one reply at most.
    max_reply_bytes: int = 1024**2
    # What names the allow-list in a refusal (the setting an operator edits).
    setting: str = "DRIFTBOARD_JUDGE_HOSTS"
    resolve: Resolver = field(default=resolve_host, compare=False)

    def listed(self, host: str, port: int) -> bool:
        return any(_pattern_matches(pattern, host, port) for pattern in self.allowed_hosts)

    def addresses(self, url: str) -> tuple[str, int, list[str]]:
        """The URL's host and port, and the addresses it resolves to now, each one checked."""
        problem = url_problem(url)
        if problem:
            raise OutboundRefused(f"the URL {problem}")
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        listed = self.listed(host, port)
        if self.allowed_hosts and not listed:
            raise OutboundRefused(f"the host {host}:{port} is not in {self.setting}")
        addresses = self.resolve(host, port)
        if not listed and not all(_public(address) for address in addresses):
            raise OutboundRefused(
                f"the host {host} resolves to a loopback, private or link-local address; "
                f"list it in {self.setting} to allow it"
            )
        return host, port, addresses

    def connect(self, url: str, *, timeout: float) -> http.client.HTTPConnection:
        """A connection to the URL's origin, opened on an address checked just now."""
        host, port, addresses = self.addresses(url)
        kind = _PinnedHTTPSConnection if urlsplit(url).scheme == "https" else _PinnedHTTPConnection
        error: OSError = OSError(f"{host} resolves to no address")
        for address in addresses:
            connection = kind(host, port, timeout=timeout)
            connection.address = address
            try:
                connection.connect()
            except OSError as exc:
                connection.close()
                error = exc
            else:
                return connection
        raise error

    def request(
        self, method: str, url: str, *, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        """One exchange, redirects not followed: the status, headers and body (at most
        `max_reply_bytes`; OSError beyond). Raises OutboundRefused, OSError or HTTPException."""
        parts = urlsplit(url)
        connection = self.connect(url, timeout=timeout)
        try:
            connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body, headers)
            response = connection.getresponse()
            raw = response.read(self.max_reply_bytes + 1)
        finally:
            connection.close()
        if len(raw) > self.max_reply_bytes:
            raise OSError(f"the reply is larger than the {self.max_reply_bytes:,} bytes read")
        return response.status, dict(response.headers), raw


class _PinnedHTTPConnection(http.client.HTTPConnection):
    address: str

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    address: str

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def webhook_policy(url: str, *, setting: str) -> OutboundPolicy:
    """The policy of a webhook URL an operator set in `setting`: its own host is listed (an operator's
    receiver may be internal), every other host is refused, so a redirect or a rebinding goes nowhere."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return OutboundPolicy(allowed_hosts=(f"{host}:{parts.port or '*'}",), setting=setting)


def judge_policy() -> OutboundPolicy:
    """The policy of judge endpoints, from the settings as they are now."""
    return OutboundPolicy(
        allowed_hosts=tuple(settings.DRIFTBOARD_JUDGE_HOSTS),
        max_reply_bytes=settings.DRIFTBOARD_JUDGE_MAX_REPLY_BYTES,
    )


def alert_policy() -> OutboundPolicy:
    """The policy of alert channels' URLs (Slack, PagerDuty, webhooks), from the settings as they are now."""
    return OutboundPolicy(allowed_hosts=tuple(settings.DRIFTBOARD_ALERT_HOSTS), setting="DRIFTBOARD_ALERT_HOSTS")
