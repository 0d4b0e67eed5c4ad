"""Keys, addresses and invite slugs for the fake ``convos`` (stdlib only).

Mirrors ``dist/utils/invite.js`` of @xmtp/convos-cli 0.10.15 closely enough that the real
CLI's ``conversations inspect-invite`` decodes the slugs made here (and reports
``signatureValid: true``), and that garbage input fails with the same decoder messages
as protobufjs 8.8.1 (``index out of range: 4 + 8 > 5``, ``invalid wire type 6 at offset 3``).

What is real: the SignedInvite/InvitePayload protobuf layout, the zlib framing, base64url
with ``*`` separators every 300 characters, secp256k1 recoverable signatures over
SHA-256(payload), EIP-55 addresses, XMTP inbox ids (sha256(address + nonce)).
What is not: the conversation token is not ChaCha20-Poly1305 (no stdlib cipher); it has the
same framing and length (version byte, 12-byte nonce, packed id, 16-byte tag) but uses an
HMAC-SHA256 keystream, so only this double can open it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import struct
import urllib.parse
import zlib
from dataclasses import dataclass

# ─── secp256k1 ───

_P = 2**256 - 2**32 - 977
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798
_GY = 0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8

_Jac = tuple[int, int, int]


def _jdouble(p: _Jac) -> _Jac:
    x, y, z = p
    if y == 0 or z == 0:
        return (0, 1, 0)
    ysq = y * y % _P
    s = 4 * x * ysq % _P
    m = 3 * x * x % _P
    nx = (m * m - 2 * s) % _P
    ny = (m * (s - nx) - 8 * ysq * ysq) % _P
    nz = 2 * y * z % _P
    return (nx, ny, nz)


def _jadd(p: _Jac, q: _Jac) -> _Jac:
    if p[2] == 0:
        return q
    if q[2] == 0:
        return p
    x1, y1, z1 = p
    x2, y2, z2 = q
    z1z1 = z1 * z1 % _P
    z2z2 = z2 * z2 % _P
    u1 = x1 * z2z2 % _P
    u2 = x2 * z1z1 % _P
    s1 = y1 * z2 * z2z2 % _P
    s2 = y2 * z1 * z1z1 % _P
    if u1 == u2:
        if s1 != s2:
            return (0, 1, 0)
        return _jdouble(p)
    h = (u2 - u1) % _P
    r = (s2 - s1) % _P
    h2 = h * h % _P
    h3 = h * h2 % _P
    u1h2 = u1 * h2 % _P
    nx = (r * r - h3 - 2 * u1h2) % _P
    ny = (r * (u1h2 - nx) - s1 * h3) % _P
    nz = h * z1 * z2 % _P
    return (nx, ny, nz)


def _jmul(p: _Jac, k: int) -> _Jac:
    result: _Jac = (0, 1, 0)
    addend = p
    while k:
        if k & 1:
            result = _jadd(result, addend)
        addend = _jdouble(addend)
        k >>= 1
    return result


def _affine(p: _Jac) -> tuple[int, int] | None:
    if p[2] == 0:
        return None
    zinv = pow(p[2], -1, _P)
    zinv2 = zinv * zinv % _P
    return (p[0] * zinv2 % _P, p[1] * zinv2 * zinv % _P)


_G: _Jac = (_GX, _GY, 1)


def public_key(private_key: int) -> bytes:
    """Uncompressed public key (0x04 || x || y)."""
    point = _affine(_jmul(_G, private_key))
    assert point is not None
    return b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def sign_recoverable(digest: bytes, private_key: int) -> bytes:
    """65-byte r || s || recovery id, low-s, like viem's sign()."""
    h = int.from_bytes(digest, "big") % _N
    while True:
        k = secrets.randbelow(_N - 1) + 1
        point = _affine(_jmul(_G, k))
        assert point is not None
        rx, ry = point
        r = rx % _N
        if r == 0 or rx >= _N:
            continue
        s = pow(k, -1, _N) * (h + r * private_key) % _N
        if s == 0:
            continue
        rec = ry & 1
        if s > _N // 2:
            s = _N - s
            rec ^= 1
        return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([rec])


def recover_public_key(digest: bytes, signature: bytes) -> bytes:
    """noble-curves Signature.recoverPublicKey; raises ValueError where noble throws."""
    r = int.from_bytes(signature[0:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    rec = 1 if signature[64] == 1 else 0
    if not (1 <= r < _N) or not (1 <= s < _N):
        raise ValueError("Signature out of range")
    h = int.from_bytes(digest, "big") % _N
    x = r
    alpha = (pow(x, 3, _P) + 7) % _P
    y = pow(alpha, (_P + 1) // 4, _P)
    if y * y % _P != alpha:
        raise ValueError("Point is not on curve")
    if (y & 1) != rec:
        y = _P - y
    ir = pow(r, -1, _N)
    u1 = (-h * ir) % _N
    u2 = (s * ir) % _N
    q = _affine(_jadd(_jmul(_G, u1), _jmul((x, y, 1), u2)))
    if q is None:
        raise ValueError("point at infinity")
    return b"\x04" + q[0].to_bytes(32, "big") + q[1].to_bytes(32, "big")


# ─── Keccak-256 (Ethereum's, not SHA3-256) ───

_RC = [
    0x0000000000000001,
    0x0000000000008082,
    0x800000000000808A,
    0x8000000080008000,
    0x000000000000808B,
    0x0000000080000001,
    0x8000000080008081,
    0x8000000000008009,
    0x000000000000008A,
    0x0000000000000088,
    0x0000000080008009,
    0x000000008000000A,
    0x000000008000808B,
    0x800000000000008B,
    0x8000000000008089,
    0x8000000000008003,
    0x8000000000008002,
    0x8000000000000080,
    0x000000000000800A,
    0x800000008000000A,
    0x8000000080008081,
    0x8000000000008080,
    0x0000000080000001,
    0x8000000080008008,
]
_ROT = [
    [0, 36, 3, 41, 18],
    [1, 44, 10, 45, 2],
    [62, 6, 43, 15, 61],
    [28, 55, 25, 21, 56],
    [27, 20, 39, 8, 14],
]
_M64 = (1 << 64) - 1


def _keccak_f(a: list[list[int]]) -> None:
    for rc in _RC:
        c = [a[x][0] ^ a[x][1] ^ a[x][2] ^ a[x][3] ^ a[x][4] for x in range(5)]
        d = [
            c[(x - 1) % 5] ^ (((c[(x + 1) % 5] << 1) | (c[(x + 1) % 5] >> 63)) & _M64)
            for x in range(5)
        ]
        for x in range(5):
            for y in range(5):
                a[x][y] ^= d[x]
        b = [[0] * 5 for _ in range(5)]
        for x in range(5):
            for y in range(5):
                rot = _ROT[x][y]
                v = a[x][y]
                b[y][(2 * x + 3 * y) % 5] = ((v << rot) | (v >> (64 - rot))) & _M64 if rot else v
        for x in range(5):
            for y in range(5):
                a[x][y] = b[x][y] ^ ((~b[(x + 1) % 5][y]) & b[(x + 2) % 5][y])
        a[0][0] ^= rc


def keccak256(data: bytes) -> bytes:
    rate = 136
    padded = bytearray(data)
    padded.append(0x01)
    while len(padded) % rate:
        padded.append(0)
    padded[-1] |= 0x80
    state = [[0] * 5 for _ in range(5)]
    for off in range(0, len(padded), rate):
        block = padded[off : off + rate]
        for i in range(rate // 8):
            x, y = i % 5, i // 5
            state[x][y] ^= int.from_bytes(block[i * 8 : i * 8 + 8], "little")
        _keccak_f(state)
    out = b""
    for i in range(4):
        out += state[i % 5][i // 5].to_bytes(8, "little")
    return out


def checksum_address(address_hex40: str) -> str:
    lower = address_hex40.lower()
    digest = keccak256(lower.encode()).hex()
    return "0x" + "".join(
        ch.upper() if ch.isalpha() and int(digest[i], 16) >= 8 else ch for i, ch in enumerate(lower)
    )


def _key_int(wallet_key: str) -> int:
    return int(wallet_key[2:] if wallet_key.startswith("0x") else wallet_key, 16)


def address_for(wallet_key: str) -> str:
    """EIP-55 address of a ``0x``-prefixed secp256k1 private key (viem privateKeyToAccount)."""
    pub = public_key(_key_int(wallet_key))
    return checksum_address(keccak256(pub[1:])[-20:].hex())


def inbox_id_for(address: str) -> str:
    """libxmtp generate_inbox_id(address, nonce=0): sha256 of lowercase address + nonce."""
    return hashlib.sha256((address.lower() + "0").encode()).hexdigest()


def generate_private_key() -> str:
    return "0x" + (secrets.randbelow(_N - 1) + 1).to_bytes(32, "big").hex()


# ─── JS helpers ───

_MAX_DATE_MS = 8.64e15


def js_iso(ms: float) -> str:
    """Date.prototype.toISOString for a millisecond timestamp (raises like JS when invalid)."""
    if ms != ms or abs(ms) > _MAX_DATE_MS:
        raise ValueError("Invalid time value")
    ms_int = int(ms)  # Date() truncates toward zero (TimeClip)
    days, rem = divmod(ms_int, 86_400_000)
    hh, rem = divmod(rem, 3_600_000)
    mi, rem = divmod(rem, 60_000)
    ss, mss = divmod(rem, 1000)
    # civil_from_days (Howard Hinnant)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    year = f"{y:04d}" if 0 <= y <= 9999 else ("+" if y > 0 else "-") + f"{abs(y):06d}"
    return f"{year}-{m:02d}-{d:02d}T{hh:02d}:{mi:02d}:{ss:02d}.{mss:03d}Z"


def node_base64url_decode(text: str) -> bytes:
    """Buffer.from(text, "base64url"): both alphabets, skips junk, stops at '='."""
    values: list[int] = []
    for ch in text:
        if ch == "=":
            break
        if "A" <= ch <= "Z":
            values.append(ord(ch) - 65)
        elif "a" <= ch <= "z":
            values.append(ord(ch) - 71)
        elif "0" <= ch <= "9":
            values.append(ord(ch) + 4)
        elif ch in "+-":
            values.append(62)
        elif ch in "/_":
            values.append(63)
    out = bytearray()
    for i in range(0, len(values) - len(values) % 4, 4):
        n = (values[i] << 18) | (values[i + 1] << 12) | (values[i + 2] << 6) | values[i + 3]
        out += n.to_bytes(3, "big")
    rest = values[len(values) - len(values) % 4 :]
    if len(rest) == 2:
        out.append(((rest[0] << 2) | (rest[1] >> 4)) & 0xFF)
    elif len(rest) == 3:
        n = (rest[0] << 12) | (rest[1] << 6) | rest[2]
        out += (n >> 2).to_bytes(2, "big")
    # Node allocates from the string length; junk characters only shrink the result.
    size = len(text)
    if size and text[size - 1] == "=":
        size -= 1
        if size > 1 and text[size - 1] == "=":
            size -= 1
    return bytes(out[: (size * 3) >> 2])


def b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# ─── protobufjs 8.8.1 reader, as much of it as the invite needs ───


class DecodeError(Exception):
    """An error the real decoder throws; str() is the JS message."""


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0
        self.len = len(buf)

    def _oor(self, write_length: int = 0) -> DecodeError:
        return DecodeError(f"index out of range: {self.pos} + {write_length or 1} > {self.len}")

    def _near_end(self) -> int:
        value = 0
        for i in range(4):
            if self.pos >= self.len:
                raise self._oor()
            b = self.buf[self.pos]
            self.pos += 1
            value = (value | (b & 127) << (i * 7)) & 0xFFFFFFFF
            if b < 128:
                return value
        raise self._oor()

    def _prefix(self) -> int | None:
        if self.len - self.pos < 5:
            if self.pos >= self.len:
                raise self._oor()
            if self.buf[self.pos] >= 128:
                return self._near_end()
        return None

    def _first4(self) -> tuple[int, int, bool]:
        buf, pos = self.buf, self.pos
        value = 0
        for i in range(4):
            b = buf[pos]
            pos += 1
            value = (value | (b & 127) << (7 * i)) & 0xFFFFFFFF
            if b < 128:
                self.pos = pos
                return value, pos, True
        return value, pos, False

    def tag(self) -> int:
        early = self._prefix()
        if early is not None:
            return early
        value, pos, done = self._first4()
        if done:
            return value
        b = self.buf[pos]
        value = (value | (b & 15) << 28) & 0xFFFFFFFF
        self.pos = pos + 1
        if b < 128 and (b & 112) == 0:
            return value
        raise DecodeError("invalid tag encoding")

    def size(self) -> int:
        early = self._prefix()
        if early is not None:
            return early
        value, pos, done = self._first4()
        if done:
            return value
        b = self.buf[pos]
        self.pos = pos + 1
        if b > 7:
            raise DecodeError("invalid length encoding")
        return (value | b << 28) & 0xFFFFFFFF

    def bytes_(self) -> bytes:
        length = self.size()
        start, end = self.pos, self.pos + length
        if end > self.len:
            raise self._oor(length)
        self.pos = end
        return self.buf[start:end]

    def string(self) -> str:
        return self.bytes_().decode("utf-8", "replace")

    def sfixed64(self) -> int:
        if self.pos + 8 > self.len:
            raise self._oor(8)
        value = struct.unpack_from("<q", self.buf, self.pos)[0]
        self.pos += 8
        return int(value)

    def bool_(self) -> bool:
        value = False
        for _ in range(10):
            if self.pos >= self.len:
                raise self._oor()
            b = self.buf[self.pos]
            self.pos += 1
            if b & 127:
                value = True
            if b < 128:
                return value
        raise DecodeError("invalid varint encoding")

    def skip(self, length: int | None = None) -> None:
        if length is not None:
            if self.pos + length > self.len:
                raise self._oor(length)
            self.pos += length
            return
        while True:
            if self.pos >= self.len:
                raise self._oor()
            b = self.buf[self.pos]
            self.pos += 1
            if not b & 128:
                return

    def skip_type(self, wire_type: int, depth: int = 0, field_number: int | None = None) -> None:
        if depth > 100:
            raise DecodeError("max depth exceeded")
        if field_number == 0:
            raise DecodeError("illegal tag: field number 0")
        if wire_type == 0:
            self.skip()
        elif wire_type == 1:
            self.skip(8)
        elif wire_type == 2:
            self.skip(self.size())
        elif wire_type == 3:
            while True:
                tag = self.tag()
                nested = tag >> 3
                wt = tag & 7
                if not nested:
                    raise DecodeError("illegal tag: field number 0")
                if wt == 4:
                    if field_number is not None and nested != field_number:
                        raise DecodeError("invalid end group tag")
                    break
                self.skip_type(wt, depth + 1, nested)
        elif wire_type == 5:
            self.skip(4)
        else:
            raise DecodeError(f"invalid wire type {wire_type} at offset {self.pos}")


# field number -> (name, wire type, reader)
_SIGNED = {1: ("payload", 2, "bytes_"), 2: ("signature", 2, "bytes_")}
_PAYLOAD = {
    1: ("conversationToken", 2, "bytes_"),
    2: ("creatorInboxId", 2, "bytes_"),
    3: ("tag", 2, "string"),
    4: ("name", 2, "string"),
    5: ("description_p", 2, "string"),
    6: ("imageURL", 2, "string"),
    7: ("conversationExpiresAtUnix", 1, "sfixed64"),
    8: ("expiresAtUnix", 1, "sfixed64"),
    9: ("expiresAfterUse", 0, "bool_"),
    10: ("emoji", 2, "string"),
}


def _decode(buf: bytes, fields: dict[int, tuple[str, int, str]]) -> dict[str, object]:
    reader = _Reader(buf)
    message: dict[str, object] = {}
    while reader.pos < reader.len:
        tag = reader.tag()
        wire = tag & 7
        number = tag >> 3
        spec = fields.get(number)
        if spec is not None and spec[1] == wire:
            message[spec[0]] = getattr(reader, spec[2])()
            continue
        reader.skip_type(wire, 0, number)
    return message


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


# ─── Invites ───

_COMPRESSION_MARKER = 0x1F
_HKDF_SALT = b"ConvosInviteV1"


def _compress_if_smaller(data: bytes) -> bytes:
    if len(data) <= 100:
        return data
    compressed = zlib.compress(data)
    if len(compressed) + 5 < len(data):
        return bytes([_COMPRESSION_MARKER]) + len(data).to_bytes(4, "big") + compressed
    return data


def _inflate(data: bytes) -> bytes:
    """zlib.inflateSync with Node's error messages."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data)
    except zlib.error as exc:
        text = str(exc)
        raise DecodeError(text.split(": ", 1)[1] if ": " in text else text) from None
    if not d.eof:
        raise DecodeError("unexpected end of file")
    return out


def _insert_separators(text: str, every: int = 300) -> str:
    if len(text) <= every:
        return text
    return "*".join(text[i : i + every] for i in range(0, len(text), every))


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
        i += 1
    return okm[:length]


def _token_key(wallet_key: str, inbox_id: str) -> bytes:
    key_bytes = _key_int(wallet_key).to_bytes(32, "big")
    return _hkdf(key_bytes, _HKDF_SALT, f"inbox:{inbox_id}".encode(), 32)


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hmac.new(key, b"ks" + nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        counter += 1
    return out[:length]


def encrypt_conversation_token(conversation_id: str, inbox_id: str, wallet_key: str) -> bytes:
    raw = conversation_id.encode()
    packed = bytes([0x02, len(raw)]) + raw if len(raw) <= 255 else b"\x02\x00" + raw
    key = _token_key(wallet_key, inbox_id)
    nonce = secrets.token_bytes(12)
    ct = bytes(a ^ b for a, b in zip(packed, _keystream(key, nonce, len(packed)), strict=True))
    tag = hmac.new(key, b"tag" + inbox_id.encode() + nonce + ct, hashlib.sha256).digest()[:16]
    return b"\x01" + nonce + ct + tag


def decrypt_conversation_token(token: bytes, inbox_id: str, wallet_key: str) -> str:
    if not token or token[0] != 1:
        raise ValueError(f"Unsupported token version: {token[0] if token else 'undefined'}")
    nonce, ct, tag = token[1:13], token[13:-16], token[-16:]
    key = _token_key(wallet_key, inbox_id)
    want = hmac.new(key, b"tag" + inbox_id.encode() + nonce + ct, hashlib.sha256).digest()[:16]
    if len(token) < 29 or not hmac.compare_digest(want, tag):
        raise ValueError("Unsupported state or unable to authenticate data")
    packed = bytes(a ^ b for a, b in zip(ct, _keystream(key, nonce, len(ct)), strict=True))
    if packed[:1] != b"\x02" or len(packed) < 2:
        raise ValueError("Unknown conversation ID tag")
    length = packed[1]
    return packed[2 : 2 + length].decode("utf-8", "replace")


def create_invite_slug(
    conversation_id: str,
    creator_inbox_id: str,
    tag: str,
    wallet_key: str,
    *,
    name: str | None = None,
    description: str | None = None,
    image_url: str | None = None,
    emoji: str | None = None,
    expires_at_unix: int | None = None,
    conversation_expires_at_unix: int | None = None,
    expires_after_use: bool = False,
    signature: bytes | None = None,
) -> str:
    token = encrypt_conversation_token(conversation_id, creator_inbox_id, wallet_key)
    payload = _field_bytes(1, token) + _field_bytes(2, bytes.fromhex(creator_inbox_id))
    payload += _field_bytes(3, tag.encode())
    for number, value in ((4, name), (5, description), (6, image_url)):
        if value:
            payload += _field_bytes(number, value.encode())
    if conversation_expires_at_unix is not None:
        payload += bytes([7 << 3 | 1]) + struct.pack("<q", conversation_expires_at_unix)
    if expires_at_unix is not None:
        payload += bytes([8 << 3 | 1]) + struct.pack("<q", expires_at_unix)
    payload += bytes([9 << 3, 1 if expires_after_use else 0])
    if emoji:
        payload += _field_bytes(10, emoji.encode())
    if signature is None:
        signature = sign_recoverable(hashlib.sha256(payload).digest(), _key_int(wallet_key))
    signed = _field_bytes(1, payload) + _field_bytes(2, signature)
    return _insert_separators(b64url(_compress_if_smaller(signed)))


@dataclass
class Invite:
    tag: str
    creator_inbox_id: str
    conversation_token: bytes
    name: str | None
    description: str | None
    image_url: str | None
    emoji: str | None
    expires_at_ms: float | None
    conversation_expires_at_ms: float | None
    expires_after_use: bool
    payload_bytes: bytes
    signature: bytes


_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_SPECIAL = {"http", "https", "ws", "wss", "ftp", "file"}


def _invite_param(text: str) -> str | None:
    """new URL(text).searchParams.get("i"), None when text is not a URL or has no ``i``."""
    match = _URL_SCHEME.match(text)
    if not match:
        return None
    scheme = match.group(0)[:-1].lower()
    if scheme in _SPECIAL and scheme != "file":
        rest = text[match.end() :].lstrip("/\\")
        host = re.split(r"[/\\?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1]
        if not host or host.startswith(":"):
            return None
    query = text.split("#", 1)[0]
    if "?" not in query:
        return None
    for key, value in urllib.parse.parse_qsl(query.split("?", 1)[1], keep_blank_values=True):
        if key == "i":
            return value
    return None


def parse_invite(text: str) -> Invite:
    slug = text.strip()
    param = _invite_param(slug)
    if param:
        slug = param
    data = node_base64url_decode(slug.replace("*", ""))
    if data[:1] == bytes([_COMPRESSION_MARKER]):
        data = _inflate(data[5:])
    signed = _decode(data, _SIGNED)
    payload_bytes = signed.get("payload", b"")
    assert isinstance(payload_bytes, bytes)
    payload = _decode(payload_bytes, _PAYLOAD)

    def text_field(key: str) -> str | None:
        value = payload.get(key)
        return value if isinstance(value, str) and value else None

    def date_field(key: str) -> float | None:
        value = payload.get(key)
        return float(value) * 1000 if isinstance(value, int) and value else None

    signature = signed.get("signature", b"")
    token = payload.get("conversationToken", b"")
    creator = payload.get("creatorInboxId", b"")
    assert isinstance(signature, bytes) and isinstance(token, bytes)
    assert isinstance(creator, bytes)
    return Invite(
        tag=str(payload.get("tag", "")),
        creator_inbox_id=creator.hex(),
        conversation_token=token,
        name=text_field("name"),
        description=text_field("description_p"),
        image_url=text_field("imageURL"),
        emoji=text_field("emoji"),
        expires_at_ms=date_field("expiresAtUnix"),
        conversation_expires_at_ms=date_field("conversationExpiresAtUnix"),
        expires_after_use=bool(payload.get("expiresAfterUse", False)),
        payload_bytes=payload_bytes,
        signature=signature,
    )


def verify_invite(invite: Invite) -> bool:
    """verifyInvite: structure plus a recoverable signature (any signer)."""
    if not invite.tag or not invite.creator_inbox_id or not invite.conversation_token:
        return False
    if len(invite.signature) != 65 or not invite.payload_bytes:
        return False
    try:
        recover_public_key(hashlib.sha256(invite.payload_bytes).digest(), invite.signature)
    except ValueError:
        return False
    return True


def verify_invite_signature(invite: Invite, wallet_key: str) -> bool:
    """verifyInviteSignature: signed by this wallet key."""
    try:
        recovered = recover_public_key(
            hashlib.sha256(invite.payload_bytes).digest(), invite.signature
        )
    except (ValueError, IndexError):
        return False
    return recovered == public_key(_key_int(wallet_key))


def invite_to_slug(invite: Invite) -> str:
    signed = _field_bytes(1, invite.payload_bytes) + _field_bytes(2, invite.signature)
    return _insert_separators(b64url(_compress_if_smaller(signed)))
