"""The attachment upload stand-in: the Convos API's presign endpoint and an https asset store.

``send-attachment`` on ``--env local`` asks ``http://localhost:4000/api`` for a presigned
upload (``GET /api/v2/agents/assets/presigned`` with any ``X-Agent-API-Key``: ``{objectKey,
uploadUrl, assetUrl}``), PUTs the encrypted bytes to ``uploadUrl`` and sends ``assetUrl`` in
the message; remote-attachment URLs must be https, so the store speaks TLS with a certificate
from a test CA made at run time (kept in the state directory so a restarted node keeps it);
clients trust it through ``NODE_EXTRA_CA_CERTS``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import secrets
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

API_PORT = 4000
ASSET_PORT = 4443
MAX_UPLOAD = 64 * 1024 * 1024
_KEY = re.compile(r"^[0-9a-f]{32}$")


def make_test_ca(directory: Path) -> tuple[Path, Path, Path]:
    """``ca.pem`` (what clients trust) and the server's ``cert.pem``/``key.pem`` for
    localhost, made once per state directory."""
    ca_file, cert_file, key_file = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    if ca_file.is_file() and cert_file.is_file() and key_file.is_file():
        return ca_file, cert_file, key_file
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xmtpnode test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return ca_file, cert_file, key_file


class _DualStackServer(ThreadingHTTPServer):
    """Listens on ``::`` and 127.0.0.1 at once (Node may resolve localhost to either)."""

    daemon_threads = True
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _server(port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    try:
        return _DualStackServer(("::", port), handler)
    except OSError:  # no IPv6 in this namespace
        return ThreadingHTTPServer(("127.0.0.1", port), handler)


class AssetServers:
    """Both HTTP servers, each on its own thread."""

    def __init__(self, state_dir: Path) -> None:
        self.store = state_dir / "assets"
        self.store.mkdir(parents=True, exist_ok=True)
        self.ca_file, cert_file, key_file = make_test_ca(state_dir / "tls")
        self.uploads = 0
        store = self.store
        servers = self

        class Api(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/api/v2/agents/assets/presigned":
                    self.send_error(404)
                    return
                if not self.headers.get("X-Agent-API-Key"):
                    self.send_error(401, "X-Agent-API-Key missing")
                    return
                key = secrets.token_hex(16)
                body = json.dumps(
                    {
                        "objectKey": key,
                        "uploadUrl": f"https://localhost:{ASSET_PORT}/upload/{key}",
                        "assetUrl": f"https://localhost:{ASSET_PORT}/assets/{key}",
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Assets(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _key(self, prefix: str) -> str | None:
                if not self.path.startswith(prefix):
                    return None
                key = self.path[len(prefix) :]
                return key if _KEY.match(key) else None

            def do_PUT(self) -> None:
                key = self._key("/upload/")
                length = int(self.headers.get("Content-Length") or -1)
                if key is None or not 0 <= length <= MAX_UPLOAD:
                    self.send_error(400)
                    return
                (store / key).write_bytes(self.rfile.read(length))
                servers.uploads += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                key = self._key("/assets/")
                path = store / key if key else None
                if path is None or not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.api = _server(API_PORT, Api)
        self.assets = _server(ASSET_PORT, Assets)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.assets.socket = context.wrap_socket(self.assets.socket, server_side=True)
        self._threads = [
            threading.Thread(target=server.serve_forever, name=name, daemon=True)
            for name, server in (("api", self.api), ("assets", self.assets))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        for server in (self.api, self.assets):
            server.shutdown()
            server.server_close()
