"""The resource envelope every admin API answer wears.

`{kind, apiVersion, metadata{id, etag, createdAt, updatedAt}, spec}` for one
resource; `{kind, apiVersion, metadata{total, limit, offset}, items}` for a
list.  Generic over the spec type so that each domain declares its own.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Generic, TypeVar

import msgspec

SpecT = TypeVar("SpecT")


class ResourceMetadata(msgspec.Struct, rename="camel", omit_defaults=True):
    id: str
    etag: str | None = None
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None


class Resource(msgspec.Struct, Generic[SpecT], rename="camel"):
    kind: str
    api_version: str
    metadata: ResourceMetadata
    spec: SpecT


class ListMetadata(msgspec.Struct, rename="camel"):
    total: int
    limit: int
    offset: int


class ResourceList(msgspec.Struct, Generic[SpecT], rename="camel"):
    kind: str
    api_version: str
    metadata: ListMetadata
    items: list[Resource[SpecT]]


def etag_for(*parts: object) -> str:
    """A strong ETag from the values that define a resource's current version."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=10).hexdigest()
    return f'"{digest}"'


class RequestMetadata(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """What a client may send as metadata: the id on create; the rest is what a GET
    returned, accepted (and ignored) so that a GET body can be PUT back."""

    id: str | None = None
    etag: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class ResourceRequest(msgspec.Struct, Generic[SpecT], rename="camel", forbid_unknown_fields=True):
    """A request body: `{"metadata": {"id": ...}, "spec": {...}}`, mirroring the answers."""

    spec: SpecT
    metadata: RequestMetadata = msgspec.field(default_factory=RequestMetadata)
    kind: str | None = None
    api_version: str | None = None
