"""One user-data document from the user-data of several groups: a MIME multipart message.

cloud-init reads a multipart/mixed user-data part by part, as `cloud-init
devel make-mime` writes it: each part's Content-Type says which handler
takes it.  Parts are typed here by their first line, the way cloud-init
types a document that comes alone.  Cloud-config parts (and Jinja templates,
which render to one) carry a Merge-Type header, so that cloud-init merges
them instead of letting the last one replace keys wholesale: lists append,
mappings merge key by key, and where two parts give the same key a plain
value, the earlier part (the first group by name) keeps it.  A part's own
`merge_how` still wins over the header.

The message is built when the data changes, never per request, and is the
same bytes for the same parts (the instance-id is a digest of them): its
boundary is derived from the parts rather than drawn at random.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

MERGE_TYPE = "list(append)+dict(recurse_array)+str()"

# cloud-init's starts of a user-data document and the part type each stands for.
_STARTS = {
    "#include": "text/x-include-url",
    "#include-once": "text/x-include-once-url",
    "#!": "text/x-shellscript",
    "#cloud-config": "text/cloud-config",
    "#part-handler": "text/part-handler",
    "#upstart-job": "text/upstart-job",
    "#cloud-boothook": "text/cloud-boothook",
    "#cloud-config-archive": "text/cloud-config-archive",
    "#cloud-config-jsonp": "text/cloud-config-jsonp",
    "## template: jinja": "text/jinja2",
}
# Longest first: "#cloud-config-archive" is not "#cloud-config".
_BY_LENGTH = sorted(_STARTS.items(), key=lambda item: -len(item[0]))
_MERGED_TYPES = frozenset(("text/cloud-config", "text/jinja2"))


def part_type(text: str) -> str:
    """The MIME type cloud-init would give `text` on its own (text/plain: no handler takes it)."""
    head = text[:64].lower()
    return next((ctype for start, ctype in _BY_LENGTH if head.startswith(start)), "text/plain")


def is_mime(text: str) -> bool:
    return text[:200].lower().startswith(("content-type:", "mime-version:"))


def combine(parts: list[tuple[str, str]]) -> str:
    """`parts` ((name, user-data) in the order cloud-init should apply them) as one multipart/mixed
    message.  A part that is itself a MIME message is nested whole."""
    message = MIMEMultipart()
    digest = hashlib.blake2b(digest_size=12)
    for name, text in parts:
        message.attach(_part(name, text))
        digest.update(len(text).to_bytes(8, "big") + text.encode())
    boundary = f"==chamicore-{digest.hexdigest()}=="
    while any(boundary in text for _, text in parts):  # never a line of the content
        boundary = f"=={hashlib.blake2b(boundary.encode(), digest_size=12).hexdigest()}=="
    message.set_boundary(boundary)
    return message.as_string()


def _part(name: str, text: str) -> Message:
    if is_mime(text):
        return email.message_from_string(text, policy=email.policy.compat32)
    ctype = part_type(text)
    # ASCII goes as it is (7bit, readable when an admin looks at it); other text as base64, which
    # every reader decodes back to the same UTF-8.
    part = MIMEText(text, ctype.split("/", 1)[1], "us-ascii" if text.isascii() else "utf-8")
    part.add_header("Content-Disposition", "attachment", filename=name)
    if ctype in _MERGED_TYPES:
        part["Merge-Type"] = MERGE_TYPE
    return part


# Bounded: cloud-init waits 3 s between tries, so a boot path that is away delays the end of a boot ~10 s, not
# the minutes of cloud-init's default (10 tries).  Only what the boot path checks is posted (no host keys).
PHONE_HOME_PART = "chamicore-phone-home"
_PHONE_HOME = "#cloud-config\nphone_home:\n  url: {url}\n  post: [instance_id, hostname, fqdn]\n  tries: 3\n"


def with_phone_home(user_data: str, url: str) -> str:
    """`user_data` with cloud-init's phone_home module added, posting to `url` at the end of the boot.

    A part of its own, last and merged like the groups' parts: a `phone_home` the admin wrote keeps its
    own keys (the earlier part keeps a plain value)."""
    part = _PHONE_HOME.format(url=url)
    if not user_data:
        return part
    return combine([("user-data", user_data), (PHONE_HOME_PART, part)])
