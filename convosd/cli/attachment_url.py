"""Where a remote attachment's URL points, before the CLI fetches it: pure, no I/O.

The real CLI (0.10.15, ``conversation download-attachment``) does ``fetch(remote.url)``:
Node's fetch, the URL the sender chose, redirects followed, ``http:`` as well, 127.0.0.1 as
well. convosd reads that URL from the message's display string (:func:`remote_url`, the
``[remote attachment: NAME (LENGTH bytes) URL]`` that ``conversation stream`` and
``conversation messages`` print) and refuses it (:func:`url_problem`) unless it is plainly an
``https:`` URL to a public host. The rules are strict on purpose: what Python and the
WHATWG URL parser Node uses read differently is refused, not guessed:

- the display must split one way only (one ``(N bytes)`` marker: a file name may hold one),
  the URL has no white space, control character or backslash (WHATWG drops tabs and
  newlines, and reads ``\\`` as ``/``), no credentials and no ``[redacted]`` (the key
  redaction touched it), and is at most 2,048 characters;
- the scheme is ``https``; the host is ASCII letters, digits, ``-`` and ``.`` (so no
  percent-encoding or Unicode that WHATWG would map to digits), or a bracketed IPv6 literal;
- an IPv4 host in any form WHATWG accepts (``2130706433``, ``0x7f.1``, ``0177.0.0.1``,
  ``127.1``) and every IPv6 literal (IPv4-mapped ``::ffff:127.0.0.1`` included) must be a
  global address: loopback, private, link-local, shared, reserved, unspecified and
  multicast addresses are refused;
- ``localhost`` and names under ``.localhost``, ``.local``, ``.internal`` and ``.arpa`` are
  refused; any other name is returned for the caller to resolve (its addresses must be
  global too);
- a host the operator trusts (``attachmentTrustedHosts``: a local XMTP node's asset server
  in development) skips the locality rules, not the others (https, syntax, credentials).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

#: the only scheme a remote attachment may use
SCHEME = "https"
MAX_URL = 2048
_MARKER = re.compile(r" \((?:\d+|undefined) bytes\) ")
_PREFIX = "[remote attachment: "
_HOST = re.compile(r"^[A-Za-z0-9.-]+$")
_NUMBER = re.compile(r"^(?:0[xX][0-9A-Fa-f]*|[0-9]+)$")
_LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal", ".arpa")


@dataclass(frozen=True, slots=True)
class UrlVerdict:
    """``problem`` (None when fine) and, for a host name, the ``name`` to resolve."""

    problem: str | None
    name: str | None = None


def remote_url(display: str) -> str | None:
    """The URL in a remote attachment's display string; None when there is none or when the
    string splits more than one way (a file name holding ``(N bytes)``)."""
    if not display.startswith(_PREFIX) or not display.endswith("]"):
        return None
    markers = list(_MARKER.finditer(display))
    if len(markers) != 1:
        return None
    return display[markers[0].end() : -1]


def _ipv4_whatwg(host: str) -> ipaddress.IPv4Address | bool | None:
    """WHATWG's IPv4 parser: an address, None when ``host`` is a name, False when it ends
    in a number but is no address (WHATWG fails the URL)."""
    parts = host.split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if not parts or not _NUMBER.match(parts[-1]):
        return None  # its last label is not a number: a domain
    if len(parts) > 4:
        return False
    numbers = []
    for part in parts:
        if not _NUMBER.match(part):
            return False
        if part[:2] in ("0x", "0X"):
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            try:
                numbers.append(int(part, 8))
            except ValueError:
                return False
        else:
            numbers.append(int(part))
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return False
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value += number * 256 ** (3 - index)
    return ipaddress.IPv4Address(value)


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` may not be fetched from, or None for a global unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return address_problem(mapped)
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_private or not address.is_global:
        return "a private or reserved address"
    return None


def url_problem(url: str, trusted: frozenset[str] = frozenset()) -> UrlVerdict:
    """Whether the CLI may fetch ``url`` (see the module's rules). ``trusted``: lower-case
    host names and IP literals (IPv6 without brackets) whose locality is not refused."""
    if len(url) > MAX_URL:
        return UrlVerdict(f"the URL is longer than {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url) or "\\" in url:
        return UrlVerdict("the URL holds white space, a control character or a backslash")
    if "[redacted]" in url:
        return UrlVerdict("the URL held text shaped like attachment key material")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SCHEME:
        return UrlVerdict("the URL is not https")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return UrlVerdict("the URL carries credentials")
    if authority.startswith("["):
        literal, bracket, port = authority[1:].partition("]")
        if not bracket or "%" in literal or (port and not re.fullmatch(r":[0-9]*", port)):
            return UrlVerdict("the URL's host is not a valid IPv6 literal")
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(literal)
        except ValueError:
            return UrlVerdict("the URL's host is not a valid IPv6 literal")
        if literal.lower() in trusted:
            return UrlVerdict(None)
        problem = address_problem(address)
        return UrlVerdict(f"the URL's host is {problem}" if problem else None)
    host, _, port = authority.partition(":")
    if port and not port.isdigit():
        return UrlVerdict("the URL's port is not a number")
    if not host or not _HOST.match(host):
        return UrlVerdict("the URL's host is not plain ASCII letters, digits, '-' and '.'")
    host = host.lower()
    if host.rstrip(".") in trusted:
        return UrlVerdict(None)
    ipv4 = _ipv4_whatwg(host)
    if ipv4 is False:
        return UrlVerdict("the URL's host is not a valid IPv4 address")
    if isinstance(ipv4, ipaddress.IPv4Address):
        problem = address_problem(ipv4)
        return UrlVerdict(f"the URL's host is {problem}" if problem else None)
    name = host.rstrip(".")
    if not name or name == "localhost" or name.endswith(_LOCAL_NAMES):
        return UrlVerdict("the URL's host is a local name")
    return UrlVerdict(None, name)
