"""The few MLS (RFC 9420) wire fields the node reads: pure parsing, no I/O.

A store-and-relay node never decrypts or checks anything; it needs the installation key of a
KeyPackage (to file it) and the group id and content type of a group message (to file it on
its topic and mark commits). Both sit in the clear at fixed places of the TLS presentation
language encoding (RFC 9420 §2.1: QUIC-style variable-length integers prefix ``opaque<V>``).
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL_MLS10 = 1
WIRE_PUBLIC_MESSAGE = 1
WIRE_PRIVATE_MESSAGE = 2
WIRE_KEY_PACKAGE = 5
CONTENT_COMMIT = 3
# Sender types (RFC 9420 §6): member and external carry a uint32 index.
_SENDER_MEMBER, _SENDER_EXTERNAL = 1, 2


class MlsParseError(ValueError):
    """The bytes are not the MLS structure the node expected."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise MlsParseError(f"truncated at byte {self.pos} (wanted {count})")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def varint(self) -> int:
        first = self.uint(1)
        prefix = first >> 6
        if prefix == 3:
            raise MlsParseError("invalid variable-length integer prefix")
        value = first & 0x3F
        for _ in range((1 << prefix) - 1):
            value = (value << 8) | self.uint(1)
        return value

    def opaque(self) -> bytes:
        return self.take(self.varint())


def key_package_installation_key(data: bytes) -> bytes:
    """The installation key of a TLS-serialized KeyPackage: its ``leaf_node.signature_key``.

    Accepts the bare KeyPackage (what libxmtp uploads) and one wrapped in an MLSMessage.
    """
    reader = _Reader(data)
    if reader.uint(2) != PROTOCOL_MLS10:
        raise MlsParseError("not an MLS 1.0 KeyPackage")
    second = reader.uint(2)  # cipher suite, or the wire format of an MLSMessage wrapper
    if second == WIRE_KEY_PACKAGE:
        if reader.uint(2) != PROTOCOL_MLS10:
            raise MlsParseError("not an MLS 1.0 KeyPackage")
        reader.uint(2)  # cipher suite
    reader.opaque()  # init_key
    reader.opaque()  # leaf_node.encryption_key
    key = reader.opaque()  # leaf_node.signature_key
    if not key:
        raise MlsParseError("empty signature key")
    return key


@dataclass(frozen=True, slots=True)
class GroupMessageHeader:
    group_id: bytes
    epoch: int
    is_commit: bool


def group_message_header(data: bytes) -> GroupMessageHeader:
    """Group id, epoch and whether it is a commit, from an MLSMessage's clear header."""
    reader = _Reader(data)
    if reader.uint(2) != PROTOCOL_MLS10:
        raise MlsParseError("not an MLS 1.0 message")
    wire_format = reader.uint(2)
    if wire_format == WIRE_PRIVATE_MESSAGE:
        group_id = reader.opaque()
        epoch = reader.uint(8)
        content_type = reader.uint(1)
    elif wire_format == WIRE_PUBLIC_MESSAGE:
        group_id = reader.opaque()
        epoch = reader.uint(8)
        sender_type = reader.uint(1)
        if sender_type in (_SENDER_MEMBER, _SENDER_EXTERNAL):
            reader.uint(4)
        reader.opaque()  # authenticated_data
        content_type = reader.uint(1)
    else:
        raise MlsParseError(f"wire format {wire_format} is not a group message")
    if not group_id:
        raise MlsParseError("empty group id")
    return GroupMessageHeader(group_id, epoch, content_type == CONTENT_COMMIT)
