"""What cloud-init accepts as user-data or vendor-data, checked before it is stored,
and the meta-data values that boot scripts use.

A payload that cloud-init would silently ignore, or a #cloud-config that is
not valid YAML, is caught here (422) rather than on a booting node.
"""

from __future__ import annotations

import email
import email.policy

import yaml

from admin_api.http import field_problem
from core.identity import BOOT_TOKEN_RULE, is_boot_token

# The starts cloud-init's user-data handlers recognise.
SCRIPT_STARTS = ("#!", "#include", "#include-once", "#cloud-boothook", "#part-handler", "#upstart-job",
                 "## template: jinja", "#cloud-config-jsonp")
ACCEPTED = "#cloud-config, #cloud-config-archive, #!script, #include, #cloud-boothook, #part-handler, " \
           "## template: jinja, or a MIME multipart message"


def check_user_data(text: str | None, path: str) -> None:
    if not text:
        return
    if "\x00" in text:
        raise field_problem(path, "must not contain NUL characters")
    if text.startswith("#cloud-config-archive"):
        document = _yaml(text, path)
        if not isinstance(document, list):
            raise field_problem(path, "a #cloud-config-archive is a YAML list of parts")
        return
    if text.startswith("#cloud-config") and not text.startswith("#cloud-config-jsonp"):
        document = _yaml(text, path)
        if document is not None and not isinstance(document, dict):
            raise field_problem(path, "#cloud-config must be a YAML mapping (key: value)")
        return
    if text.startswith(SCRIPT_STARTS):
        return
    if text[:200].lower().startswith(("content-type:", "mime-version:")):
        message = email.message_from_string(text, policy=email.policy.default)
        if not message.is_multipart():
            raise field_problem(path, "a MIME payload must be multipart (Content-Type: multipart/mixed)")
        return
    raise field_problem(path, f"cloud-init would ignore this; start it with {ACCEPTED}")


# `nid-length` digits at most: a NID is a 64-bit number.
MAX_NID_LENGTH = 19


def check_meta_data(meta: dict, path: str) -> None:
    """Meta-data keys that boot scripts use: `local-hostname` is the node's {{hostname}}; without one, a node
    with a NID is called `short-name` + its NID padded to `nid-length` digits (hotpath/answers.py)."""
    hostname = meta.get("local-hostname")
    if hostname is not None and not (is_boot_token(hostname) and 0 < len(hostname) <= 253):
        raise field_problem(f"{path}.local-hostname", f"a host name of 1 to 253 {BOOT_TOKEN_RULE}")
    short_name = meta.get("short-name")
    if short_name is not None and not (is_boot_token(short_name) and 0 < len(short_name) <= 253 - MAX_NID_LENGTH):
        raise field_problem(f"{path}.short-name", f"the start of host names: 1 to {253 - MAX_NID_LENGTH} "
                                                  f"{BOOT_TOKEN_RULE}")
    nid_length = meta.get("nid-length")
    if nid_length is not None and not (type(nid_length) is int and 1 <= nid_length <= MAX_NID_LENGTH):
        raise field_problem(f"{path}.nid-length", f"the digits of the NID in host names: 1 to {MAX_NID_LENGTH}")


def _yaml(text: str, path: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise field_problem(path, f"not valid YAML{where}: {reason}") from None
