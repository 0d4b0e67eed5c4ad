"""libxmtp's compiled schema (``proto_descriptor.bin``), loaded at run time.

No ``.proto`` compilation: the FileDescriptorSet libxmtp ships is loaded into a protobuf
``DescriptorPool`` and message classes come from ``message_factory``, so the node speaks
exactly the client's schema. ``PROVENANCE.json`` records where the file came from and for
which bindings; ``tests/xmtpnode/test_node.py`` fails when the bindings pin moves on and the
file was not refreshed.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

HERE = Path(__file__).resolve().parent
DESCRIPTOR_FILE = HERE / "proto_descriptor.bin"
PROVENANCE_FILE = HERE / "PROVENANCE.json"

IDENTITY_SERVICE = "xmtp.identity.api.v1.IdentityApi"
MLS_SERVICE = "xmtp.mls.api.v1.MlsApi"


def provenance() -> dict[str, str]:
    return dict(json.loads(PROVENANCE_FILE.read_text("utf-8")))


def descriptor_sha256() -> str:
    return hashlib.sha256(DESCRIPTOR_FILE.read_bytes()).hexdigest()


@cache
def pool() -> descriptor_pool.DescriptorPool:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_FILE.read_bytes())
    loaded = descriptor_pool.DescriptorPool()
    for file in files.file:
        loaded.Add(file)
    return loaded


@cache
def message(full_name: str) -> Any:
    """The message class for ``full_name`` (e.g. ``xmtp.mls.api.v1.GroupMessage``)."""
    return message_factory.GetMessageClass(pool().FindMessageTypeByName(full_name))


def service(full_name: str) -> Any:
    return pool().FindServiceByName(full_name)
