"""What the convos CLI 0.10.x prints with ``--json``, as pydantic models.

Only the fields convosd reads are declared; the CLI may print more (``extra="ignore"``).
Shapes follow the CLI's compiled source (``dist/commands/**``) and its observed output.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CliOutput(BaseModel):
    """One JSON output of the CLI: only the fields convosd reads, frozen."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class PermissionLevel(IntEnum):
    """``conversation members``: the bindings' enum."""

    MEMBER = 0
    ADMIN = 1
    SUPER_ADMIN = 2


class PermissionPolicy(IntEnum):
    """``conversation permissions``: the bindings' enum."""

    ALLOW = 0
    DENY = 1
    ADMIN = 2
    SUPER_ADMIN = 3
    DOES_NOT_EXIST = 4
    OTHER = 5


_VERSION = re.compile(r"^@xmtp/convos-cli/(?P<version>\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)\b")


class CliVersion(CliOutput):
    """``convos --version``: ``@xmtp/convos-cli/0.10.15 linux-x64 node-v22.23.3``."""

    version: str
    raw: str

    @property
    def parts(self) -> tuple[int, int, int]:
        major, minor, patch = self.version.split("-")[0].split(".")
        return int(major), int(minor), int(patch)

    @classmethod
    def parse(cls, stdout: str) -> CliVersion:
        line = stdout.strip().splitlines()[0] if stdout.strip() else ""
        match = _VERSION.match(line)
        if not match:
            raise ValueError(f"not a convos version line: {line[:120]!r}")
        return cls(version=match.group("version"), raw=line)


# --- identity ---------------------------------------------------------------------------


class IdentityEntry(CliOutput):
    """One item of ``identity list`` (0.10: a single identity per home)."""

    id: str
    address: str | None = None
    inbox_id: str | None = Field(default=None, alias="inboxId")
    label: str | None = None
    profile_name: str | None = Field(default=None, alias="profileName")
    created_at: str | None = Field(default=None, alias="createdAt")


class IdentityProperties(CliOutput):
    id: str
    inbox_id: str = Field(alias="inboxId")
    installation_id: str | None = Field(default=None, alias="installationId")
    is_registered: bool | None = Field(default=None, alias="isRegistered")


class IdentityInfo(CliOutput):
    """``identity info``: ``{properties: {id, address, inboxId, ...}, client: {...}}``."""

    properties: IdentityProperties


class IdentityCreated(CliOutput):
    """``identity create`` (no inbox id yet: the inbox is registered by the first client)."""

    id: str


class SyncResult(CliOutput):
    """``conversation sync``."""

    success: bool
    conversation_id: str = Field(alias="conversationId")


class ConsentUpdated(CliOutput):
    """``conversation update-consent``."""

    success: bool
    conversation_id: str = Field(alias="conversationId")
    consent_state: str = Field(alias="consentState")


class ResetResult(CliOutput):
    success: bool
    message: str | None = None


# --- conversations ----------------------------------------------------------------------


class InviteOut(CliOutput):
    slug: str
    url: str
    tag: str | None = None


class CreateResult(CliOutput):
    conversation_id: str = Field(alias="conversationId")
    identity_id: str | None = Field(default=None, alias="identityId")
    inbox_id: str = Field(alias="inboxId")
    name: str | None = None
    invite: InviteOut


class JoinJoined(CliOutput):
    status: Literal["joined"]
    conversation_id: str = Field(alias="conversationId")
    identity_id: str | None = Field(default=None, alias="identityId")
    inbox_id: str | None = Field(default=None, alias="inboxId")
    tag: str | None = None
    conversation_name: str | None = Field(default=None, alias="conversationName")


class JoinWaiting(CliOutput):
    """``status: "timeout"`` (waited, not accepted yet) or ``"request_sent"`` (--no-wait)."""

    status: Literal["timeout", "request_sent"]
    identity_id: str | None = Field(default=None, alias="identityId")
    inbox_id: str | None = Field(default=None, alias="inboxId")
    creator_inbox_id: str | None = Field(default=None, alias="creatorInboxId")
    tag: str | None = None
    message: str | None = None


JoinResult = Annotated[JoinJoined | JoinWaiting, Field(discriminator="status")]


class InviteInfo(CliOutput):
    """``conversations inspect-invite``: decoded offline."""

    tag: str
    creator_inbox_id: str = Field(alias="creatorInboxId")
    name: str | None = None
    expires_at: str | None = Field(default=None, alias="expiresAt")
    expires_after_use: bool | None = Field(default=None, alias="expiresAfterUse")
    conversation_expires_at: str | None = Field(default=None, alias="conversationExpiresAt")
    signature_valid: bool = Field(alias="signatureValid")
    invite_expired: bool = Field(default=False, alias="inviteExpired")
    conversation_expired: bool = Field(default=False, alias="conversationExpired")


class ConversationSummary(CliOutput):
    """One item of ``conversations list``."""

    conversation_id: str = Field(alias="conversationId")
    kind: str | None = None
    name: str | None = None
    created_at: str | None = Field(default=None, alias="createdAt")
    member_count: int | None = Field(default=None, alias="memberCount")
    is_active: bool = Field(default=True, alias="isActive")
    is_locked: bool = Field(default=False, alias="isLocked")


class InviteResult(CliOutput):
    """``conversation invite``."""

    conversation_id: str = Field(alias="conversationId")
    slug: str
    url: str
    tag: str | None = None
    expires_at: str | None = Field(default=None, alias="expiresAt")
    single_use: bool = Field(default=False, alias="singleUse")


class Member(CliOutput):
    inbox_id: str = Field(alias="inboxId")
    permission_level: PermissionLevel = Field(alias="permissionLevel")

    @field_validator("permission_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        # Bindings have printed the enum both as a number and as its name.
        if isinstance(value, str) and not value.isdigit():
            key = value.replace(" ", "_").replace("-", "_").upper()
            key = {"SUPERADMIN": "SUPER_ADMIN"}.get(key, key)
            return PermissionLevel[key]
        return value


class ConversationData(CliOutput):
    id: str
    created_at: str | None = Field(default=None, alias="createdAt")
    is_active: bool = Field(default=True, alias="isActive")
    creator_inbox_id: str | None = Field(default=None, alias="creatorInboxId")
    member_count: int | None = Field(default=None, alias="memberCount")
    name: str | None = None
    description: str | None = None
    image_url: str | None = Field(default=None, alias="imageUrl")


class InfoIdentity(CliOutput):
    identity_id: str | None = Field(default=None, alias="identityId")
    inbox_id: str | None = Field(default=None, alias="inboxId")


class ConversationInfo(CliOutput):
    """``conversation info``: ``{conversation, identity, members}``."""

    conversation: ConversationData
    identity: InfoIdentity
    members: list[Member]


class Profile(CliOutput):
    inbox_id: str = Field(alias="inboxId")
    name: str | None = None
    image: str | None = None
    is_me: bool = Field(default=False, alias="isMe")
    #: a profile message (or the group's appData) names this member
    has_profile: bool = Field(default=True, alias="hasProfile")


class Profiles(CliOutput):
    conversation_id: str = Field(alias="conversationId")
    member_count: int | None = Field(default=None, alias="memberCount")
    profiles: list[Profile]


class PolicySet(CliOutput):
    add_member_policy: PermissionPolicy = Field(alias="addMemberPolicy")


class PermissionsResult(CliOutput):
    conversation_id: str = Field(alias="conversationId")
    policy_set: PolicySet = Field(alias="policySet")
    admins: list[str] = []
    super_admins: list[str] = Field(default_factory=list, alias="superAdmins")

    @property
    def locked(self) -> bool:
        """``locked`` = the add-member permission is deny."""
        return self.policy_set.add_member_policy == PermissionPolicy.DENY


# --- messages ---------------------------------------------------------------------------


class ContentType(CliOutput):
    authority_id: str | None = Field(default=None, alias="authorityId")
    type_id: str = Field(alias="typeId")
    version_major: int | None = Field(default=None, alias="versionMajor")
    version_minor: int | None = Field(default=None, alias="versionMinor")


class RemoteAttachmentInfo(CliOutput):
    """Of a structured ``remoteAttachment`` field only what may leave the CLI boundary: its
    url, secret, salt, nonce and contentDigest are not declared, so never read."""

    filename: str | None = None
    content_length: int | None = Field(default=None, alias="contentLength")


class MultiRemoteAttachmentInfo(CliOutput):
    attachments: list[RemoteAttachmentInfo] = []


class CliMessage(CliOutput):
    """A message as ``conversation messages`` and ``conversation stream`` print it."""

    id: str
    sender_inbox_id: str = Field(alias="senderInboxId")
    content_type: ContentType = Field(alias="contentType")
    content: str | None = None
    sent_at: datetime = Field(alias="sentAt")
    delivery_status: int | str | None = Field(default=None, alias="deliveryStatus")
    #: printed by ``agent serve`` only (0.10.15); see :mod:`convosd.cli.attachment_meta`
    remote_attachment: RemoteAttachmentInfo | None = Field(default=None, alias="remoteAttachment")
    multi_remote_attachment: MultiRemoteAttachmentInfo | None = Field(
        default=None, alias="multiRemoteAttachment"
    )

    @property
    def sent_at_ns(self) -> int:
        """``sentAt`` in nanoseconds since the epoch (the unit of ``--sent-after``)."""
        return (self.sent_at - _EPOCH) // timedelta(microseconds=1) * 1000
