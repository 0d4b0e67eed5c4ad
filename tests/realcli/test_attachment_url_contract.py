"""convosd.cli.attachment_url against the real thing: the display string the real CLI's own
``normalizeMessageContent`` (dist/utils/xmtp.js) prints for a remote attachment, and the
host Node's WHATWG URL parser (what the CLI's ``fetch`` uses) reads from each URL.

Every URL convosd lets through must name, for Node, the same https host (and a name or a
global address); a URL Node reads as a loopback or private address must be refused."""

from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest

from convosd.cli.attachment_url import address_problem, remote_url, url_problem
from tests.fakeconvos.fc_blob import render_attachment
from tests.realcli.conftest import CLI_ROOT, pinned_node

pytestmark = pytest.mark.realcli

URLS = [
    "https://uploads.example.com/a/b?c=d#e",
    "HTTPS://Uploads.Example.COM:8443/x",
    "https://8.8.8.8/x",
    "https://[2606:4700:4700::1111]/x",
    "https://example.com./x",
    "https://1.2.3.4.example.com/x",
    "http://uploads.example.com/x",
    "https://127.0.0.1/x",
    "https://2130706433/x",
    "https://0x7f.1/x",
    "https://0177.0.0.01/x",
    "https://127.1/x",
    "https://[::ffff:127.0.0.1]/x",
    "https://[::ffff:7f00:1]/x",
    "https://127.0.0.1\\@uploads.example.com/x",
    "https://127.0.0.%31/x",
    "https://\uff11\uff12\uff17.0.0.1/x",
    "https://127.0.0.1\t/x",
    "https://uploads.example.com\t.127.0.0.1/x",
    "https:/127.0.0.1/x",
    "https:127.0.0.1/x",
    "https://user:pw@uploads.example.com/x",
    "https://0x7f000001/x",
    "https://[::1]/x",
    "https://localhost/x",
    " https://127.0.0.1/x",
]

SCRIPT = r"""
const { normalizeMessageContent } = await import(process.argv[1] + "/dist/utils/xmtp.js");
const urls = JSON.parse(process.argv[2]);
const out = urls.map((url) => {
  const display = normalizeMessageContent({
    contentType: { authorityId: "xmtp.org", typeId: "remoteStaticAttachment" },
    content: { url, filename: "a (1 bytes) b.png", contentLength: 12 },
  });
  let parsed = null;
  try { const u = new URL(url); parsed = { protocol: u.protocol, hostname: u.hostname }; }
  catch (e) { parsed = null; }
  return { url, display, parsed };
});
console.log(JSON.stringify(out));
"""


def test_convosd_reads_the_real_display_and_never_lets_through_what_node_reads_as_local() -> None:
    run = subprocess.run(
        [str(pinned_node()), "--input-type=module", "-e", SCRIPT, str(CLI_ROOT), json.dumps(URLS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(run.stdout)
    for item in results:
        url, display, parsed = item["url"], item["display"], item["parsed"]
        # the double prints what the real CLI prints
        content = {"url": url, "filename": "a (1 bytes) b.png", "contentLength": 12}
        assert render_attachment("remoteStaticAttachment", content) == display
        # a file name holding the marker: two readings, so convosd reads no URL
        assert remote_url(display) is None
        plain = display.replace("a (1 bytes) b.png", "b.png")
        assert remote_url(plain) == url
        verdict = url_problem(url)
        if parsed is None or verdict.problem is not None:
            continue  # Node fails the URL (the CLI's fetch too), or convosd refuses it
        # let through: Node must read the same https host, and a public one
        assert parsed["protocol"] == "https:", item
        host = parsed["hostname"].strip("[]")
        if verdict.name is not None:
            assert host == verdict.name or host == verdict.name + ".", item
        else:
            assert address_problem(ipaddress.ip_address(host)) is None, item
    local = [
        item["url"]
        for item in results
        if item["parsed"] is not None and _is_local(item["parsed"]["hostname"].strip("[]"))
    ]
    assert len(local) >= 10 and all(url_problem(url).problem for url in local), local


def _is_local(host: str) -> bool:
    try:
        return address_problem(ipaddress.ip_address(host)) is not None
    except ValueError:
        return host in ("localhost",)
