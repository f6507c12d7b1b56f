"""Pure-Python twin of hotpath/_dispatch.pyx, for tests that prove identical answers.

Not imported by the running server.  It renders with the twin renderer and
normalises MACs with core.mac, the rules every other part of Chamicore uses.
Who may read what: the compiled module's docstring.
"""

from hmac import compare_digest
from urllib.parse import unquote_plus

import msgspec

from core.arches import ALIASES
from core.arches import printable as arch_printable
from core.mac import try_normalize_mac as normalize_mac
from hotpath._render_py import (
    render_bootscript,
    render_first_stage,
    render_first_stage_signed,
    render_wait_script,
)

CT_TEXT, CT_PROBLEM, CT_JSON, CT_EFI, CT_SIGNATURE = 0, 1, 2, 3, 4
EP_BOOTSCRIPT, EP_FIRST_STAGE, EP_CLOUD_INIT, EP_OTHER = 0, 1, 2, 3
OUT_OK, OUT_WAIT, OUT_BAD_REQUEST, OUT_NOT_FOUND, OUT_NEEDS_CLIENT_IP = 0, 1, 2, 3, 4
MAX_RETRY = 64
MAX_CACHED_VARIANTS = 16

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")
_DOCUMENTS = frozenset(("user-data", "meta-data", "vendor-data"))
_UNSIGNED = "scripts are not signed here (CHAMICORE_BOOT_SIGNING_KEY is unset)"

__all__ = ["Dispatcher", "normalize_mac", "parse_query"]


def parse_query(query: str) -> dict:
    params: dict = {}
    if not query:
        return params
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        params.setdefault(key, value)
    return params


def _is_id(value: str) -> bool:
    return (2 <= len(value) <= 255 and _ID_CHARS.issuperset(value)
            and value[0] not in "._-" and value[-1] not in "._-")


def _problem(status: int, title: str, detail: str) -> bytes:
    return msgspec.json.encode({"type": "about:blank", "title": title, "status": status, "detail": detail})


def _for_arch(answers: dict, asked: str):
    arch = ALIASES.get(asked.strip().lower())
    chosen = answers.get(arch) if arch is not None else None
    return chosen if chosen is not None else answers.get("*")


def _arch_shown(asked: str) -> str:
    arch = ALIASES.get(asked.strip().lower())
    if arch is not None:
        return arch
    return arch_printable(asked) or ""


def _bad_request(detail: str) -> tuple:
    return (400, CT_PROBLEM, _problem(400, "Bad Request", detail), None, EP_BOOTSCRIPT, OUT_BAD_REQUEST)


class Dispatcher:
    signer = None  # core.signing.ScriptSigner when scripts are signed

    def __init__(self, index, base_url, fallback_base, retry_base, retry_max, unknown_delay, scheme="http://",
                 files=None):
        self.index = index
        self.base_url = base_url
        self.fallback_base = fallback_base
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.unknown_delay = max(1, int(unknown_delay + 0.999999))
        self.scheme = scheme
        self.files = files if files is not None else {}
        self._first_stage: dict = {}

    def base_for(self, host: str) -> str:
        if self.base_url is not None:
            return self.base_url
        if host and len(host) <= 255 and _HOST_CHARS.issuperset(host):
            return self.scheme + host
        return self.fallback_base

    def dispatch(self, path: str, query: str, host: str) -> tuple:
        if path == "/boot/v1/bootscript":
            return self.bootscript(query, host)
        if path.startswith("/cloud-init/"):
            rest = path[12:]
            node_id, slash, document = rest.partition("/")
            if not slash:
                if rest in _DOCUMENTS:
                    return (0, CT_TEXT, b"", None, EP_CLOUD_INIT, OUT_NEEDS_CLIENT_IP)
                return self._not_found(EP_CLOUD_INIT, "no such cloud-init document: /cloud-init/" + rest[:64])
            token: str | None = None
            head, slash, tail = document.partition("/")
            if slash:
                token, document = head, tail
            if document not in _DOCUMENTS:
                return self._not_found(EP_CLOUD_INIT, "cloud-init documents are user-data, meta-data and vendor-data")
            entry = self.index.cloud_by_id.get(node_id)
            if entry is None:
                return self._cloud_init(None, document, node_id)
            if token is not None and entry.token and token.isascii() and compare_digest(entry.token, token):
                return self._cloud_init(entry, document, node_id)
            return (0, CT_TEXT, b"", None, EP_CLOUD_INIT, OUT_NEEDS_CLIENT_IP)
        if path == "/boot/v1/boot.ipxe":
            return (200, CT_TEXT, self.first_stage(self.base_for(host)), None, EP_FIRST_STAGE, OUT_OK)
        body = self.files.get(path)
        if body is not None:
            return (200, CT_EFI, body, None, EP_OTHER, OUT_OK)
        if path == "/boot/v1/bootscript.sig":
            return self.script_signature(query, host)
        if path == "/boot/v1/boot.ipxe.sig":
            return self.first_stage_signature(self.base_for(host))
        return self._not_found(EP_OTHER, "no such boot-path resource: " + path[:128])

    def cloud_init_by_ip(self, client_ip: str, path: str) -> tuple:
        rest = path[12:]
        entry = self.index.cloud_by_ip.get(client_ip)
        node_id, slash, _ = rest.partition("/")
        if not slash:
            return self._cloud_init(entry, rest, "address " + client_ip)
        if entry is not None and entry.node_id != node_id:
            entry = None
        return self._cloud_init(entry, rest.rpartition("/")[2], node_id)

    def first_stage(self, base: str) -> bytes:
        body = self._first_stage.get(base)
        if body is None:
            body = render_first_stage(base) if self.signer is None else render_first_stage_signed(base)
            if len(self._first_stage) < MAX_CACHED_VARIANTS:
                self._first_stage[base] = body
        return body

    def first_stage_signature(self, base: str) -> tuple:
        if self.signer is None:
            return self._not_found(EP_OTHER, _UNSIGNED)
        body = self.first_stage(base)
        value = self._first_stage.get(body)
        if value is None:
            value = self.signer.value(body)
            if len(self._first_stage) < 2 * MAX_CACHED_VARIANTS:
                self._first_stage[body] = value
        return (200, CT_SIGNATURE, self.signer.der(value), None, EP_OTHER, OUT_OK)

    def script_signature(self, query: str, host: str) -> tuple:
        if self.signer is None:
            return self._not_found(EP_OTHER, _UNSIGNED)
        answer = self.bootscript(query, host)
        if answer[5] != OUT_OK:
            if answer[0] == 400:
                return (400, CT_PROBLEM, answer[2], None, EP_OTHER, OUT_BAD_REQUEST)
            return self._not_found(EP_OTHER, "no signed script for this node: it must wait (unknown, disabled or "
                                   "without boot parameters); boot.ipxe tries again")
        body = answer[2]
        params = parse_query(query)
        if params.get("mac") is not None:
            entry = self.index.by_mac.get(normalize_mac(params["mac"]))
        elif params.get("name") is not None:
            entry = self.index.by_id.get(params["name"])
        else:
            entry = self.index.by_nid.get(int(params["nid"]))
        if entry.body is body:
            value = entry.signature
        else:
            value = entry.cache.get(body) if entry.cache is not None else None
        if value is None:
            value = self.signer.value(body)
            if entry.body is body:
                entry.signature = value
            else:
                if entry.cache is None:
                    entry.cache = {}
                if len(entry.cache) < 2 * MAX_CACHED_VARIANTS:
                    entry.cache[body] = value
        return (200, CT_SIGNATURE, self.signer.der(value), None, EP_OTHER, OUT_OK)

    def _cloud_init(self, entry, document: str, who: str) -> tuple:
        if entry is None:
            return self._not_found(EP_CLOUD_INIT, "no cloud-init data for " + who[:300])
        body = {"user-data": entry.user_data, "meta-data": entry.meta_data}.get(document, entry.vendor_data)
        return (200, CT_JSON if document == "meta-data" else CT_TEXT, body, entry.node_id, EP_CLOUD_INIT, OUT_OK)

    def _not_found(self, endpoint: int, detail: str) -> tuple:
        return (404, CT_PROBLEM, _problem(404, "Not Found", detail), None, endpoint, OUT_NOT_FOUND)

    def bootscript(self, query: str, host: str) -> tuple:
        params = parse_query(query)
        index = self.index
        retry = 0
        by_mac = False
        raw = params.get("retry")
        if raw:
            try:
                retry = min(max(int(raw), 0), MAX_RETRY)
            except ValueError:
                retry = 0

        raw = params.get("mac")
        if raw is not None:
            mac = normalize_mac(raw)
            if mac is None:
                return _bad_request("mac=" + repr(raw[:64]) + " is not a MAC address "
                                    "(use aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff)")
            entry = index.by_mac.get(mac)
            lookup = "mac=" + mac
            by_mac = True
        elif (raw := params.get("name")) is not None:
            if not _is_id(raw):
                return _bad_request("name=" + repr(raw[:64]) + " is not a valid component id")
            entry = index.by_id.get(raw)
            lookup = "name=" + raw
        elif (raw := params.get("nid")) is not None:
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
                return _bad_request("nid=" + repr(raw[:64]) + " is not a node number")
            entry = index.by_nid.get(int(raw))
            lookup = "nid=" + str(int(raw))
        else:
            return _bad_request("give the node as mac=<MAC>, name=<component id> or nid=<number>")

        base = self.base_for(host)
        if entry is None:
            return (200, CT_TEXT,
                    render_wait_script("no node is registered for " + lookup, lookup, base, self.unknown_delay),
                    None, EP_BOOTSCRIPT, OUT_WAIT)
        if entry.arches is not None and params.get("arch"):
            # The node's profile answers per architecture (iPXE's ${buildarch}, hotpath/profiled.py).
            chosen = _for_arch(entry.arches, params["arch"])
            if chosen is None:
                shown = _arch_shown(params["arch"])
                return (200, CT_TEXT, render_wait_script(
                    entry.arches[""].replace("{node}", entry.node_id).replace("{arch}", shown or "(unnamed)"),
                    lookup + ("&arch=" + shown if shown else ""), base, self.unknown_delay),
                    entry.node_id, EP_BOOTSCRIPT, OUT_WAIT)
            entry = chosen
            if not by_mac and entry.arch:
                lookup = lookup + "&arch=" + entry.arch
        if entry.wait_message is not None:
            return (200, CT_TEXT, render_wait_script(entry.wait_message, lookup, base, self.unknown_delay),
                    entry.node_id, EP_BOOTSCRIPT, OUT_WAIT)

        key: str | tuple
        if by_mac:
            if retry == 0 and self.base_url is not None and entry.body is not None:
                return (200, CT_TEXT, entry.body, entry.node_id, EP_BOOTSCRIPT, OUT_OK)
            key = base if retry == 0 else (base, retry)
        else:
            key = (base, retry, lookup)
        cache = entry.cache
        body = None if cache is None else cache.get(key)
        if body is None:
            if by_mac:
                body = render_bootscript(entry.kernel, entry.initrd, entry.cmdline, entry.values,
                                         entry.node_id, entry.mac, entry.chain_query, base, retry,
                                         self.retry_base, self.retry_max, entry.seed_token, self.signer is not None,
                                         entry.script)
            else:
                body = render_bootscript(entry.kernel, entry.initrd, entry.cmdline, entry.values,
                                         entry.node_id, "", lookup, base, retry, self.retry_base, self.retry_max,
                                         "", self.signer is not None, entry.script)
            if cache is None:
                cache = entry.cache = {}
            if len(cache) < MAX_CACHED_VARIANTS:
                cache[key] = body
        return (200, CT_TEXT, body, entry.node_id, EP_BOOTSCRIPT, OUT_OK)
