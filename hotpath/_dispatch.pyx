# cython: language_level=3
"""Compiled request dispatch of the boot path (twin: hotpath/_dispatch_py.py).

A request is: split path and query, normalise the MAC, one dict lookup in
the current index, return prebuilt bytes.  No I/O, no awaits: the caller
(hotpath/app.py) owns the transport, metrics and telemetry.

Who may read what.  The boot path has no accounts: a booting node proves who
it is by what it presents.

- `/boot/v1/bootscript?mac=<MAC>`: the node's script, to anyone who names
  the MAC (the firmware has nothing else to show).  Its cloud-init seed URL
  carries the node's secret seed token: `<boot URL>/cloud-init/<id>/<token>/`.
- `?name=<id>` and `?nid=<n>`: the same boot, but neither the token nor the
  MAC (no BOOTIF=, `{{mac}}` empty), since anyone can ask by id or number;
  its seed URL is `<boot URL>/cloud-init/<id>/`, which works for the node
  itself, by address.
- `/cloud-init/<id>/<token>/<document>`: to anyone presenting the node's
  current token (smd.components.cloud_init_token, 128 random bits; rotating
  it retires every URL that holds the old one).
- `/cloud-init/<id>/<document>`, or a wrong token: only to a requester whose
  address (X-Forwarded-For only from CHAMICORE_TRUSTED_PROXIES, hotpath/app.py)
  is one of that node's addresses.
- `/cloud-init/<document>`: the node that owns the requester's address.
- Anyone else: a 404 problem, the same for a node that exists and one that
  does not, and no data.

The token is rendered into the node's script when its answers are built, not
per request; a by-id request costs one lookup and one comparison, and only a
request that fails it resolves the requester's address.  A MAC is not a
secret (it is on the wire of the node's network segment): whoever can present
a node's MAC to the boot path can boot as that node, as with any network boot.
"""

from hmac import compare_digest
from urllib.parse import unquote_plus

import msgspec

from core.arches import ALIASES as _ARCH_ALIASES
from core.arches import printable as arch_printable

from hotpath._render import render_bootscript, render_first_stage, render_first_stage_signed, render_wait_script

# Content types, endpoints and outcomes travel as small ints; app.py maps them.
CT_TEXT = 0
CT_PROBLEM = 1
CT_JSON = 2
CT_EFI = 3  # an EFI program (iPXE for UEFI HTTP boot)
CT_SIGNATURE = 4  # a detached CMS signature (DER) of a script, for iPXE's imgverify

EP_BOOTSCRIPT = 0
EP_FIRST_STAGE = 1
EP_CLOUD_INIT = 2
EP_OTHER = 3

OUT_OK = 0
OUT_WAIT = 1
OUT_BAD_REQUEST = 2
OUT_NOT_FOUND = 3
OUT_NEEDS_CLIENT_IP = 4

MAX_RETRY = 64
# Renders cached per entry for other Hosts / retry counts; past this, render and forget.
MAX_CACHED_VARIANTS = 16

cdef frozenset _HEX = frozenset("0123456789abcdef")
cdef frozenset _ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
cdef dict _ARCHES = dict(_ARCH_ALIASES)
cdef frozenset _HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")
cdef frozenset _DOCUMENTS = frozenset(("user-data", "meta-data", "vendor-data"))
cdef str _UNSIGNED = "scripts are not signed here (CHAMICORE_BOOT_SIGNING_KEY is unset)"


cpdef str normalize_mac(str value):
    """Lowercase colon form, or None for anything that is not a MAC (same rules as core.mac)."""
    cdef str text = value.strip().lower()
    cdef Py_ssize_t length = len(text)
    cdef str digits
    cdef str sep
    cdef Py_ssize_t i
    if length == 12:
        digits = text
    elif length == 17 and (text[2] == ":" or text[2] == "-"):
        sep = text[2]
        for i in range(2, 17, 3):
            if text[i] != sep:
                return None
        digits = text.replace(sep, "")
    elif length == 14 and text[4] == "." and text[9] == ".":
        digits = text.replace(".", "")
    else:
        return None
    if len(digits) != 12 or not _HEX.issuperset(digits):
        return None
    return (digits[0:2] + ":" + digits[2:4] + ":" + digits[4:6] + ":" + digits[6:8] + ":"
            + digits[8:10] + ":" + digits[10:12])


cpdef dict parse_query(str query):
    """First value of each parameter, percent-decoded only when needed."""
    cdef dict params = {}
    cdef str part, key, value
    cdef Py_ssize_t eq
    if not query:
        return params
    for part in query.split("&"):
        eq = part.find("=")
        if eq < 0:
            key = part
            value = ""
        else:
            key = part[:eq]
            value = part[eq + 1:]
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        if key not in params:
            params[key] = value
    return params


cdef bint _is_id(str value):
    cdef Py_ssize_t length = len(value)
    if length < 2 or length > 255:
        return False
    if not _ID_CHARS.issuperset(value):
        return False
    return value[0] not in "._-" and value[length - 1] not in "._-"


cdef bytes _problem(int status, str title, str detail):
    return msgspec.json.encode({"type": "about:blank", "title": title, "status": status, "detail": detail})


cdef object _for_arch(dict answers, str asked):
    """The answer for this architecture (any spelling, core.arches), else the profile's any-arch one, else None."""
    cdef object arch = _ARCHES.get(asked.strip().lower())
    cdef object chosen = answers.get(arch) if arch is not None else None
    return chosen if chosen is not None else answers.get("*")


cdef str _arch_shown(str asked):
    """The architecture as a wait script may name it (its iPXE name, or a short plain word), or ""."""
    cdef object arch = _ARCHES.get(asked.strip().lower())
    if arch is not None:
        return arch
    return arch_printable(asked) or ""


cdef tuple _bad_request(str detail):
    return (400, CT_PROBLEM, _problem(400, "Bad Request", detail), None, EP_BOOTSCRIPT, OUT_BAD_REQUEST)


cdef class Dispatcher:
    """Routes one boot-path request against the current index.

    `index` is replaced whole by the change feed on a full reload (one
    reference swap).  Between reloads the feed changes the live index in
    place, node by node (Index.replace), with no await inside one node's
    change: a request, which reads one node, sees that node wholly before or
    wholly after an edit.  Copying a 100k-node index for every edit would cost
    far more than that guarantee needs.
    """

    cdef public object index
    cdef public object base_url
    cdef public str fallback_base
    cdef public double retry_base
    cdef public double retry_max
    cdef public int unknown_delay
    cdef public str scheme
    cdef public dict files
    cdef dict _first_stage
    # core.signing.ScriptSigner when scripts are signed (set once, before serving), else None.
    cdef public object signer

    def __init__(self, index, base_url, str fallback_base, double retry_base, double retry_max,
                 double unknown_delay, str scheme="http://", dict files=None):
        self.index = index
        self.base_url = base_url
        self.fallback_base = fallback_base
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.unknown_delay = max(1, <int>(unknown_delay + 0.999999))
        # The listener's scheme, for base URLs made from a Host header: a script fetched over
        # https chains and seeds over https.
        self.scheme = scheme
        # Paths served as they are (iPXE's EFI programs), read once at start.
        self.files = files if files is not None else {}
        self._first_stage = {}

    cpdef str base_for(self, str host):
        """The advertised boot URL: configured, or derived from a well-formed Host header."""
        if self.base_url is not None:
            return self.base_url
        if host and len(host) <= 255 and _HOST_CHARS.issuperset(host):
            return self.scheme + host
        return self.fallback_base

    cpdef tuple dispatch(self, str path, str query, str host):
        """(status, content type, body, node id or None, endpoint, outcome)."""
        cdef str rest, node_id, document, token
        cdef Py_ssize_t slash
        cdef object entry
        if path == "/boot/v1/bootscript":
            return self.bootscript(query, host)
        if path.startswith("/cloud-init/"):
            rest = path[12:]
            slash = rest.find("/")
            if slash < 0:
                if rest in _DOCUMENTS:
                    return (0, CT_TEXT, b"", None, EP_CLOUD_INIT, OUT_NEEDS_CLIENT_IP)
                return self._not_found(EP_CLOUD_INIT, "no such cloud-init document: /cloud-init/" + rest[:64])
            node_id = rest[:slash]
            document = rest[slash + 1:]
            token = None
            slash = document.find("/")
            if slash >= 0:
                token = document[:slash]
                document = document[slash + 1:]
            if document not in _DOCUMENTS:
                return self._not_found(EP_CLOUD_INIT, "cloud-init documents are user-data, meta-data and vendor-data")
            entry = self.index.cloud_by_id.get(node_id)
            if entry is None:
                return self._cloud_init(None, document, node_id)
            if token is not None and entry.token and token.isascii() and compare_digest(<str>entry.token, token):
                return self._cloud_init(entry, document, node_id)
            # No token, or not this node's: only the node's own address will do (cloud_init_by_ip).
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

    cpdef tuple cloud_init_by_ip(self, str client_ip, str path):
        """`/cloud-init/<document>` for the requester's node; `/cloud-init/<id>/[<token>/]<document>`
        when the requester's address is one of that node's."""
        cdef str rest = path[12:]
        cdef Py_ssize_t slash = rest.find("/")
        cdef object entry = self.index.cloud_by_ip.get(client_ip)
        cdef str node_id
        if slash < 0:
            return self._cloud_init(entry, rest, "address " + client_ip)
        node_id = rest[:slash]
        if entry is not None and entry.node_id != node_id:
            entry = None
        return self._cloud_init(entry, rest[rest.rfind("/") + 1:], node_id)

    cpdef bytes first_stage(self, str base):
        cdef bytes body = self._first_stage.get(base)
        if body is None:
            body = render_first_stage(base) if self.signer is None else render_first_stage_signed(base)
            if len(self._first_stage) < MAX_CACHED_VARIANTS:
                self._first_stage[base] = body
        return body

    cpdef tuple first_stage_signature(self, str base):
        """boot.ipxe.sig: the signature of the first stage this Host gets."""
        if self.signer is None:
            return self._not_found(EP_OTHER, _UNSIGNED)
        cdef bytes body = self.first_stage(base)
        cdef object value = self._first_stage.get(body)
        if value is None:
            value = self.signer.value(body)  # once per first stage, when first asked for; kept beside it
            if len(self._first_stage) < 2 * MAX_CACHED_VARIANTS:
                self._first_stage[body] = value
        return (200, CT_SIGNATURE, self.signer.der(value), None, EP_OTHER, OUT_OK)

    cpdef tuple script_signature(self, str query, str host):
        """bootscript.sig: the signature of exactly the bytes bootscript answers to the same query and
        Host.  A node's prerendered script is signed when the feed renders it (off the event loop); a
        variant (another Host or retry count) when its signature is first asked for, then kept beside it:
        signing costs about 1 ms, rendering microseconds, and most variants are never verified.  A script
        that only says wait has no signature."""
        if self.signer is None:
            return self._not_found(EP_OTHER, _UNSIGNED)
        cdef tuple answer = self.bootscript(query, host)
        if answer[5] != OUT_OK:
            if answer[0] == 400:
                return (400, CT_PROBLEM, answer[2], None, EP_OTHER, OUT_BAD_REQUEST)
            return self._not_found(EP_OTHER, "no signed script for this node: it must wait (unknown, disabled or "
                                   "without boot parameters); boot.ipxe tries again")
        cdef bytes body = answer[2]
        cdef dict params = parse_query(query)
        cdef object raw = params.get("mac")
        cdef object entry
        if raw is not None:
            entry = self.index.by_mac.get(normalize_mac(raw))
        elif params.get("name") is not None:
            entry = self.index.by_id.get(params["name"])
        else:
            entry = self.index.by_nid.get(int(params["nid"]))
        cdef object value = None
        cdef object cache
        if entry.body is body:
            value = entry.signature
        else:
            cache = entry.cache
            if cache is not None:
                value = cache.get(body)
        if value is None:
            value = self.signer.value(body)
            if entry.body is body:
                entry.signature = value
            else:
                if cache is None:
                    cache = entry.cache = {}
                if len(cache) < 2 * MAX_CACHED_VARIANTS:
                    cache[body] = value
        return (200, CT_SIGNATURE, self.signer.der(value), None, EP_OTHER, OUT_OK)

    cdef tuple _cloud_init(self, object entry, str document, str who):
        if entry is None:
            return self._not_found(EP_CLOUD_INIT, "no cloud-init data for " + who[:300])
        if document == "user-data":
            return (200, CT_TEXT, entry.user_data, entry.node_id, EP_CLOUD_INIT, OUT_OK)
        if document == "meta-data":
            return (200, CT_JSON, entry.meta_data, entry.node_id, EP_CLOUD_INIT, OUT_OK)
        return (200, CT_TEXT, entry.vendor_data, entry.node_id, EP_CLOUD_INIT, OUT_OK)

    cdef tuple _not_found(self, int endpoint, str detail):
        return (404, CT_PROBLEM, _problem(404, "Not Found", detail), None, endpoint, OUT_NOT_FOUND)

    cpdef tuple bootscript(self, str query, str host):
        cdef dict params = parse_query(query)
        cdef object raw
        cdef str mac = None
        cdef str lookup
        cdef object entry
        cdef int retry = 0
        cdef object key
        cdef object cache
        cdef bytes body
        cdef str base
        cdef bint by_mac = False
        cdef object index = self.index

        raw = params.get("retry")
        if raw:
            try:
                retry = min(max(int(raw), 0), MAX_RETRY)
            except (ValueError, OverflowError):
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
        else:
            raw = params.get("name")
            if raw is not None:
                if not _is_id(raw):
                    return _bad_request("name=" + repr(raw[:64]) + " is not a valid component id")
                entry = index.by_id.get(raw)
                lookup = "name=" + raw
            else:
                raw = params.get("nid")
                if raw is None:
                    return _bad_request("give the node as mac=<MAC>, name=<component id> or nid=<number>")
                if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
                    return _bad_request("nid=" + repr(raw[:64]) + " is not a node number")
                entry = index.by_nid.get(int(raw))
                lookup = "nid=" + str(int(raw))

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

        if by_mac:
            if retry == 0 and self.base_url is not None:
                body = entry.body  # prerendered when the index was built
                if body is not None:
                    return (200, CT_TEXT, body, entry.node_id, EP_BOOTSCRIPT, OUT_OK)
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
                # Anyone may ask by name or nid: neither the MAC nor the seed token goes into this one.
                body = render_bootscript(entry.kernel, entry.initrd, entry.cmdline, entry.values,
                                         entry.node_id, "", lookup, base, retry, self.retry_base, self.retry_max,
                                         "", self.signer is not None, entry.script)
            if cache is None:
                cache = entry.cache = {}
            if len(cache) < MAX_CACHED_VARIANTS:
                cache[key] = body
        return (200, CT_TEXT, body, entry.node_id, EP_BOOTSCRIPT, OUT_OK)
