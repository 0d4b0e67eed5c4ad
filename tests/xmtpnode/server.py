"""The gRPC side of the node: ``IdentityApi`` and ``MlsApi`` v3, store and relay only.

Handlers are generic (``grpc.method_handlers_generic_handler``) over the message classes of the
descriptor set; the clients do all cryptography and all checks. What each RPC must do is in
README.md beside this file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from tests.xmtpnode import mls, schema
from tests.xmtpnode.store import Store, page_limit

log = logging.getLogger("xmtpnode")

API_PORT = 5556
#: What grpcio needs for libxmtp's tonic client (README): its 16 s keepalive pings must not
#: be answered with GOAWAY, messages up to 64 MiB, and no SO_REUSEPORT (it would let a second
#: listener silently share the fixed port).
SERVER_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
]

M = schema.message
KIND_ETHEREUM, KIND_PASSKEY = 1, 2


class Hub:
    """Wakes every subscriber when something is stored (each re-reads from its cursors)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    @property
    def event(self) -> asyncio.Event:
        return self._event

    def wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


def _identifiers(member: Any) -> list[tuple[str, int]]:
    kind = member.WhichOneof("kind")
    if kind == "ethereum_address":
        return [(member.ethereum_address, KIND_ETHEREUM)]
    if kind == "passkey":
        return [(member.passkey.key.hex(), KIND_PASSKEY)]
    return []


class Node:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.hub = Hub()
        self.calls: dict[str, int] = {}

    # IdentityApi ----------------------------------------------------------------------

    async def publish_identity_update(self, request: Any, context: Any) -> Any:
        update = request.identity_update
        associate: list[tuple[str, int]] = []
        revoke: list[tuple[str, int]] = []
        for action in update.actions:
            kind = action.WhichOneof("kind")
            if kind == "create_inbox":
                create = action.create_inbox
                associate.append(
                    (create.initial_identifier, create.initial_identifier_kind or KIND_ETHEREUM)
                )
            elif kind == "add":
                associate.extend(_identifiers(action.add.new_member_identifier))
            elif kind == "revoke":
                revoke.extend(_identifiers(action.revoke.member_to_revoke))
        if not update.inbox_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "identity update has no inbox")
        self.store.publish_identity_update(
            update.inbox_id, update.SerializeToString(), associate, revoke
        )
        return M("xmtp.identity.api.v1.PublishIdentityUpdateResponse")()

    async def get_identity_updates(self, request: Any, context: Any) -> Any:
        response = M("xmtp.identity.api.v1.GetIdentityUpdatesResponse")()
        update_class = M("xmtp.identity.associations.IdentityUpdate")
        for wanted in request.requests:
            entry = response.responses.add(inbox_id=wanted.inbox_id)
            for sequence_id, timestamp, data in self.store.identity_updates(
                wanted.inbox_id, wanted.sequence_id
            ):
                log_entry = entry.updates.add(
                    sequence_id=sequence_id, server_timestamp_ns=timestamp
                )
                log_entry.update.CopyFrom(update_class.FromString(data))
        return response

    async def get_inbox_ids(self, request: Any, context: Any) -> Any:
        response = M("xmtp.identity.api.v1.GetInboxIdsResponse")()
        for wanted in request.requests:
            entry = response.responses.add(
                identifier=wanted.identifier, identifier_kind=wanted.identifier_kind
            )
            inbox_id = self.store.inbox_id(wanted.identifier, wanted.identifier_kind)
            if inbox_id is not None:
                entry.inbox_id = inbox_id
        return response

    async def verify_smart_contract_wallet_signatures(self, request: Any, context: Any) -> Any:
        response = M("xmtp.identity.api.v1.VerifySmartContractWalletSignaturesResponse")()
        for _ in request.signatures:
            response.responses.add(
                is_valid=False, error="smart-contract wallets are not modelled by this node"
            )
        return response

    # MlsApi: key packages -------------------------------------------------------------

    async def _store_key_package(self, upload: Any, context: Any) -> bytes:
        data = upload.key_package_tls_serialized
        try:
            key = mls.key_package_installation_key(data)
        except mls.MlsParseError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"key package: {error}")
        self.store.put_key_package(key, data)
        return key

    async def register_installation(self, request: Any, context: Any) -> Any:
        key = await self._store_key_package(request.key_package, context)
        return M("xmtp.mls.api.v1.RegisterInstallationResponse")(installation_key=key)

    async def upload_key_package(self, request: Any, context: Any) -> Any:
        await self._store_key_package(request.key_package, context)
        return M("google.protobuf.Empty")()

    async def fetch_key_packages(self, request: Any, context: Any) -> Any:
        response = M("xmtp.mls.api.v1.FetchKeyPackagesResponse")()
        for key in request.installation_keys:
            response.key_packages.add(key_package_tls_serialized=self.store.key_package(key) or b"")
        return response

    # MlsApi: messages -----------------------------------------------------------------

    async def send_group_messages(self, request: Any, context: Any) -> Any:
        parsed = []
        for item in request.messages:
            v1 = item.v1
            try:
                header = mls.group_message_header(v1.data)
            except mls.MlsParseError as error:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"group message: {error}")
            parsed.append((header, v1))
        for header, v1 in parsed:
            self.store.add_group_message(
                header.group_id, v1.data, v1.sender_hmac, v1.should_push, header.is_commit
            )
        self.hub.wake()
        return M("google.protobuf.Empty")()

    async def send_welcome_messages(self, request: Any, context: Any) -> Any:
        for item in request.messages:
            if item.WhichOneof("version") == "welcome_pointer":
                pointer = item.welcome_pointer
                self.store.add_welcome(
                    pointer.installation_key,
                    True,
                    pointer.welcome_pointer,
                    pointer.hpke_public_key,
                    pointer.wrapper_algorithm,
                    b"",
                )
            else:
                v1 = item.v1
                self.store.add_welcome(
                    v1.installation_key,
                    False,
                    v1.data,
                    v1.hpke_public_key,
                    v1.wrapper_algorithm,
                    v1.welcome_metadata,
                )
        self.hub.wake()
        return M("google.protobuf.Empty")()

    @staticmethod
    def _group_message(row: Any, include_content: bool = True) -> Any:
        message = M("xmtp.mls.api.v1.GroupMessage")()
        message.v1.id = row.id
        message.v1.created_ns = row.created_ns
        message.v1.group_id = row.group_id
        message.v1.is_commit = row.is_commit
        message.v1.should_push = row.should_push
        if include_content:
            message.v1.data = row.data
            message.v1.sender_hmac = row.sender_hmac
        return message

    @staticmethod
    def _welcome_message(row: Any) -> Any:
        message = M("xmtp.mls.api.v1.WelcomeMessage")()
        if row.is_pointer:
            pointer = message.welcome_pointer
            pointer.id = row.id
            pointer.created_ns = row.created_ns
            pointer.installation_key = row.installation_key
            pointer.welcome_pointer = row.data
            pointer.hpke_public_key = row.hpke_public_key
            pointer.wrapper_algorithm = row.wrapper_algorithm
        else:
            v1 = message.v1
            v1.id = row.id
            v1.created_ns = row.created_ns
            v1.installation_key = row.installation_key
            v1.data = row.data
            v1.hpke_public_key = row.hpke_public_key
            v1.wrapper_algorithm = row.wrapper_algorithm
            v1.welcome_metadata = row.welcome_metadata
        return message

    @staticmethod
    def _paging(request: Any) -> tuple[int, int, int]:
        paging = request.paging_info
        return paging.direction, page_limit(paging.limit), paging.id_cursor

    async def query_group_messages(self, request: Any, context: Any) -> Any:
        direction, limit, cursor = self._paging(request)
        rows, next_cursor = self.store.query_group(request.group_id, direction, cursor, limit)
        response = M("xmtp.mls.api.v1.QueryGroupMessagesResponse")()
        response.messages.extend(self._group_message(row) for row in rows)
        response.paging_info.direction = direction
        response.paging_info.limit = limit
        response.paging_info.id_cursor = next_cursor
        return response

    async def query_welcome_messages(self, request: Any, context: Any) -> Any:
        direction, limit, cursor = self._paging(request)
        rows, next_cursor = self.store.query_welcomes(
            request.installation_key, direction, cursor, limit
        )
        response = M("xmtp.mls.api.v1.QueryWelcomeMessagesResponse")()
        response.messages.extend(self._welcome_message(row) for row in rows)
        response.paging_info.direction = direction
        response.paging_info.limit = limit
        response.paging_info.id_cursor = next_cursor
        return response

    async def get_newest_group_message(self, request: Any, context: Any) -> Any:
        response = M("xmtp.mls.api.v1.GetNewestGroupMessageResponse")()
        for group_id in request.group_ids:
            entry = response.responses.add()
            row = self.store.newest_group_message(group_id)
            if row is not None:
                entry.group_message.CopyFrom(self._group_message(row, request.include_content))
        return response

    # MlsApi: streams ------------------------------------------------------------------

    async def subscribe_group_messages(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await context.send_initial_metadata(())  # headers at once: tonic waits for them
        cursors = {item.group_id: item.id_cursor for item in request.filters}
        while True:
            event = self.hub.event
            for row in self.store.group_after(cursors):
                if row.id > cursors[row.group_id]:
                    cursors[row.group_id] = row.id
                    yield self._group_message(row)
            if not self.store.group_after(cursors, limit=1):
                await event.wait()

    async def subscribe_welcome_messages(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await context.send_initial_metadata(())
        cursors = {item.installation_key: item.id_cursor for item in request.filters}
        while True:
            event = self.hub.event
            for row in self.store.welcomes_after(cursors):
                if row.id > cursors[row.installation_key]:
                    cursors[row.installation_key] = row.id
                    yield self._welcome_message(row)
            if not self.store.welcomes_after(cursors, limit=1):
                await event.wait()

    # MlsApi: commit log ---------------------------------------------------------------

    async def batch_publish_commit_log(self, request: Any, context: Any) -> Any:
        for item in request.requests:
            self.store.add_commit_log(
                item.group_id, item.serialized_commit_log_entry, item.signature.SerializeToString()
            )
        return M("google.protobuf.Empty")()

    async def batch_query_commit_log(self, request: Any, context: Any) -> Any:
        response = M("xmtp.mls.api.v1.BatchQueryCommitLogResponse")()
        signature_class = M("xmtp.identity.associations.RecoverableEd25519Signature")
        for item in request.requests:
            direction, limit, cursor = self._paging(item)
            rows, next_cursor = self.store.query_commit_log(item.group_id, direction, cursor, limit)
            entry = response.responses.add(group_id=item.group_id)
            for sequence_id, data, signature in rows:
                log_entry = entry.commit_log_entries.add(
                    sequence_id=sequence_id, serialized_commit_log_entry=data
                )
                log_entry.signature.CopyFrom(signature_class.FromString(signature))
            entry.paging_info.direction = direction
            entry.paging_info.limit = limit
            entry.paging_info.id_cursor = next_cursor
        return response

    # wiring ---------------------------------------------------------------------------

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        unary: dict[str, dict[str, Callable[[Any, Any], Awaitable[Any]]]] = {
            schema.IDENTITY_SERVICE: {
                "PublishIdentityUpdate": self.publish_identity_update,
                "GetIdentityUpdates": self.get_identity_updates,
                "GetInboxIds": self.get_inbox_ids,
                "VerifySmartContractWalletSignatures": self.verify_smart_contract_wallet_signatures,
            },
            schema.MLS_SERVICE: {
                "SendGroupMessages": self.send_group_messages,
                "SendWelcomeMessages": self.send_welcome_messages,
                "RegisterInstallation": self.register_installation,
                "UploadKeyPackage": self.upload_key_package,
                "FetchKeyPackages": self.fetch_key_packages,
                "QueryGroupMessages": self.query_group_messages,
                "QueryWelcomeMessages": self.query_welcome_messages,
                "BatchPublishCommitLog": self.batch_publish_commit_log,
                "BatchQueryCommitLog": self.batch_query_commit_log,
                "GetNewestGroupMessage": self.get_newest_group_message,
            },
        }
        streams: dict[str, Callable[[Any, Any], AsyncIterator[Any]]] = {
            "SubscribeGroupMessages": self.subscribe_group_messages,
            "SubscribeWelcomeMessages": self.subscribe_welcome_messages,
        }
        result: list[grpc.GenericRpcHandler] = []
        for service_name in (schema.IDENTITY_SERVICE, schema.MLS_SERVICE):
            methods: dict[str, grpc.RpcMethodHandler] = {}
            for method in schema.service(service_name).methods:
                request_class = M(method.input_type.full_name)
                response_class = M(method.output_type.full_name)
                kwargs = {
                    "request_deserializer": request_class.FromString,
                    "response_serializer": response_class.SerializeToString,
                }
                full = f"{service_name}/{method.name}"
                if method.name in unary.get(service_name, {}):
                    methods[method.name] = grpc.unary_unary_rpc_method_handler(
                        self._counted(full, unary[service_name][method.name]), **kwargs
                    )
                elif service_name == schema.MLS_SERVICE and method.name in streams:
                    methods[method.name] = grpc.unary_stream_rpc_method_handler(
                        self._counted_stream(full, streams[method.name]), **kwargs
                    )
                # anything else (the two-way Subscribe, RevokeInstallation, the old
                # MlsApi/GetIdentityUpdates) is left out: grpc answers UNIMPLEMENTED
            result.append(grpc.method_handlers_generic_handler(service_name, methods))
        return result

    def _counted(
        self, name: str, handler: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        async def run(request: Any, context: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            log.debug("%s", name)
            return await handler(request, context)

        return run

    def _counted_stream(
        self, name: str, handler: Callable[[Any, Any], AsyncIterator[Any]]
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        async def run(request: Any, context: Any) -> AsyncIterator[Any]:
            self.calls[name] = self.calls.get(name, 0) + 1
            log.debug("%s (stream)", name)
            async for item in handler(request, context):
                yield item

        return run


async def start_grpc(
    node: Node, host: str = "localhost", port: int = API_PORT
) -> tuple[aio.Server, int]:
    """The server, started, and its port (``port=0``: any free one, for in-process tests)."""
    server = aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(tuple(node.handlers()))
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:
        bound, reason = 0, str(error)
    else:
        reason = "in use"
    if bound == 0 or (port and bound != port):
        raise OSError(f"could not listen on {host}:{port} ({reason}: another node here?)")
    await server.start()
    return server, bound
