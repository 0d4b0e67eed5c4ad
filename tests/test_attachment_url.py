"""convosd.cli.attachment_url: the URL of a remote attachment, read from its display string
and judged before the CLI fetches it (pure: no network)."""

from __future__ import annotations

import pytest

from convosd.cli.attachment_url import remote_url, url_problem


def test_the_url_is_read_only_when_the_display_splits_one_way() -> None:
    assert remote_url("[remote attachment: a.png (12 bytes) https://x.example/y]") == (
        "https://x.example/y"
    )
    assert remote_url("[remote attachment: unnamed (undefined bytes) https://x/y]") == "https://x/y"
    # a file name holding the marker: two readings, so none
    assert (
        remote_url("[remote attachment: a (1 bytes) https://ok/x (9 bytes) https://127.0.0.1/]")
        is None
    )
    assert remote_url("[attachment: a.png (image/png)]") is None
    assert remote_url("hello") is None


@pytest.mark.parametrize(
    "url",
    [
        "https://uploads.example.com/a/b?c=d#e",
        "HTTPS://Uploads.Example.COM:8443/x",
        "https://8.8.8.8/x",
        "https://[2606:4700:4700::1111]/x",
        "https://example.com./x",
        "https://1.2.3.4.example.com/x",
    ],
)
def test_public_https_urls_pass(url: str) -> None:
    assert url_problem(url).problem is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/x", "not https"),
        ("https:/example.com/x", "not https"),
        ("https://127.0.0.1/", "loopback"),
        ("https://127.255.255.254/", "loopback"),
        ("https://2130706433/", "loopback"),
        ("https://0x7f000001/", "loopback"),
        ("https://0x7f.0.0.1/", "loopback"),
        ("https://127.1/", "loopback"),
        ("https://017700000001/", "loopback"),
        ("https://10.0.0.1./", "private"),
        ("https://172.16.0.1/", "private"),
        ("https://[::1]:443/", "loopback"),
        ("https://[::ffff:192.168.0.1]/", "private"),
        ("https://[::]/", "unspecified"),
        ("https://224.0.0.1/", "multicast"),
        ("https://[ff02::1]/", "multicast"),
        ("https://255.255.255.255/", "private or reserved"),
        ("https://256.0.0.1/", "not a valid IPv4"),
        ("https://1.2.3.4.5/", "not a valid IPv4"),
        ("https://[::1%25eth0]/", "IPv6 literal"),
        ("https://[::1/", "IPv6 literal"),
        ("https://host.internal/", "local name"),
        ("https://printer.local/", "local name"),
        ("https://example.com:x/", "port"),
        ("https://exa mple.com/", "white space"),
        ("https://example.com/\n", "white space"),
        ("https://example.com/[redacted]", "key material"),
        ("https://" + "a" * 2050, "longer than"),
        ("https://_x.example.com/", "plain ASCII"),
    ],
)
def test_urls_the_cli_may_not_fetch_are_refused(url: str, problem: str) -> None:
    verdict = url_problem(url)
    assert verdict.problem is not None and problem in verdict.problem, verdict


def test_a_host_name_is_handed_back_to_be_resolved() -> None:
    assert url_problem("https://Uploads.Example.com./x").name == "uploads.example.com"
    assert url_problem("https://8.8.8.8/x").name is None


def test_a_trusted_host_skips_the_locality_rules_and_no_other() -> None:
    """attachmentTrustedHosts (a local node's asset server): its host may be local; the URL
    must still be https, plain and without credentials, and other local hosts stay refused."""
    trusted = frozenset({"localhost", "127.0.0.1", "::1"})
    for url in ("https://localhost:4443/a", "https://LOCALHOST./a", "https://127.0.0.1/a"):
        assert url_problem(url, trusted).problem is None, url
        assert url_problem(url, trusted).name is None  # nothing left to resolve
    assert url_problem("https://[::1]:4443/a", trusted).problem is None
    assert "not https" in (url_problem("http://localhost:4443/a", trusted).problem or "")
    assert "credentials" in (url_problem("https://u@localhost/a", trusted).problem or "")
    assert "local name" in (url_problem("https://printer.local/a", trusted).problem or "")
    assert "loopback" in (url_problem("https://127.0.0.2/a", trusted).problem or "")
    assert "local name" in (url_problem("https://localhost/a").problem or "")
