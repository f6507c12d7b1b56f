"""Turns loaded rows into each node's answers, rendered once per change.

Boot parameters resolve by precedence MAC, component, NID, group, role,
site default (a NID entry follows the number, not the node that held it); a node in several groups takes the first group by name that has
parameters.  cloud-init vendor-data resolves component, group, role, site
default the same way.  User-data too, except that a node in several groups
that have user-data gets all of them, combined part by part in group name
order (hotpath/userdata.py): groups are how an admin layers configuration.
Meta-data objects are merged, the most specific scope winning key by key,
over the node's own attributes; `public-keys` add up instead (an SSH key
given for one node does not take the cluster's away).

Meta-data also carries what OpenCHAMI's cloud-init serves, for the configs
written for it: without a `local-hostname`, a node with a NID is named
`short-name` + its NID padded to `nid-length` digits (4 by default), and
`hostname`, `cloud-provider` and `instance_data.v1` (underscore keys, the
node's groups with their descriptions and meta-data under
`vendor_data.groups`) are filled in from the same merged keys.

One BootEntry exists per MAC of the cluster and one CloudInitEntry per
node, so both are kept small (bench/ reports bytes per node).

Both hold the node's cloud-init seed token (smd.components.cloud_init_token,
the same string object): the script rendered for the node's MAC carries it
in its seed URL, and the dispatcher serves cloud-init by id to a requester
that presents it (who may read what: hotpath/_dispatch.pyx).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING

import msgspec

from core.identity import is_boot_token
from hotpath import profiled, userdata
from hotpath._render import render_bootscript

if TYPE_CHECKING:
    from core.signing import ScriptSigner


NO_VALUES: tuple = ()


class BootEntry:
    """What one MAC (or a node looked up by name/nid) gets from /boot/v1/bootscript."""

    __slots__ = ("node_id", "mac", "kernel", "initrd", "cmdline", "values", "wait_message", "body", "cache",
                 "seed_token", "signature", "arch", "arches", "script")

    def __init__(self, node_id, mac, kernel, initrd, cmdline, values, wait_message, body=None, seed_token="",
                 arch=""):
        self.node_id = node_id
        self.mac = mac  # "" for a node without interfaces (looked up by name or nid)
        self.kernel = kernel
        self.initrd = initrd
        self.cmdline = cmdline
        # The node's variables (in the order of _render.VARIABLE_NAMES) for the renderer's {{name}} markers.  An
        # entry whose kernel, initrd and cmdline name none (a wait, plain URIs, a cmdline a profile template
        # rendered) keeps none: some 350 bytes a node at 100k.
        self.values = values if "{{" in kernel or "{{" in initrd or "{{" in cmdline else NO_VALUES
        # None when the node can boot; otherwise why it must wait.
        self.wait_message = wait_message
        # The script for the configured boot URL and retry 0, rendered at build time.
        self.body = body
        # Other renders (Host-derived base URLs, retry counts), created on first need.
        self.cache = None
        # The node's cloud-init seed token, for the seed URL of the script asked for by MAC.
        self.seed_token = seed_token
        # The signature value of `body` when scripts are signed (core/signing.py); other renders keep
        # theirs in `cache`, keyed by the rendered bytes.
        self.signature = None
        # The architecture this answer is for ("": any), and, on the entry a node is looked up by when its
        # profile answers per architecture, every such answer by iPXE arch name (hotpath/profiled.py).
        self.arch = arch
        self.arches = None
        # The node's profile's own iPXE script, its request-dependent slots left open (hotpath/profiled.py),
        # or None: the boot path's kernel/initrd/boot script.  Nodes whose script is the same share one string.
        self.script = None

    @property
    def chain_query(self) -> str:
        query = "mac=" + self.mac if self.mac else "name=" + self.node_id
        return query + "&arch=" + self.arch if self.arch else query


class CloudInitEntry:
    __slots__ = ("node_id", "user_data", "meta_data", "vendor_data", "token")

    def __init__(self, node_id, user_data, meta_data, vendor_data, token=""):
        self.node_id = node_id
        self.user_data = user_data
        self.meta_data = meta_data
        self.vendor_data = vendor_data
        # What a by-id request must present unless it comes from one of the node's addresses;
        # "" (no token) leaves only the address.
        self.token = token

    @property
    def instance_id(self) -> str:
        return msgspec.json.decode(self.meta_data)["instance-id"]


@dataclasses.dataclass(slots=True)
class NodeAnswers:
    node_id: str
    nid: int | None
    by_mac: dict[str, BootEntry]
    primary: BootEntry
    cloud_init: CloudInitEntry
    ips: list[str]


class _Scoped:
    """Rows of one scoped table, keyed for precedence lookups."""

    __slots__ = ("by_mac", "by_component", "by_nid", "by_group", "by_role", "site", "_broad")

    def __init__(self, rows, has_mac: bool) -> None:
        # has_mac: boot parameters, which also have MAC and NID scopes (cloud-init payloads have neither).
        self.by_mac, self.by_component, self.by_nid, self.by_group, self.by_role = {}, {}, {}, {}, {}
        self.site = None
        for row in rows:
            if has_mac and row["mac"] is not None:
                self.by_mac[row["mac"]] = row
            elif row["component_id"] is not None:
                self.by_component[row["component_id"]] = row
            elif has_mac and row.get("nid") is not None:
                self.by_nid[row["nid"]] = row
            elif row["group_name"] is not None:
                self.by_group[row["group_name"]] = row
            elif row["role"] is not None:
                self.by_role[row["role"]] = row
            else:
                self.site = row
        # Thousands of nodes share a few (groups, role) combinations: resolve each once.
        self._broad: dict[tuple, tuple] = {}

    def chain(self, node_id: str, groups: tuple, role: str, mac: str | None = None, nid: int | None = None) -> tuple:
        """Rows that apply to this node, most specific first.  The NID's entry is per node, so outside
        the shared (groups, role) cache."""
        broad = self._broad.get((groups, role))
        if broad is None:
            rows = [self.by_group[g] for g in groups if g in self.by_group]
            if role in self.by_role:
                rows.append(self.by_role[role])
            if self.site is not None:
                rows.append(self.site)
            broad = self._broad[(groups, role)] = tuple(rows)
        specific: tuple = ()
        if mac is not None and mac in self.by_mac:
            specific = (self.by_mac[mac],)
        if node_id in self.by_component:
            specific += (self.by_component[node_id],)
        if nid is not None and nid in self.by_nid:
            specific += (self.by_nid[nid],)
        return specific + broad if specific else broad


def _text(value) -> str:
    return "" if value is None else str(value)


def _listed(value) -> list:
    return [value] if isinstance(value, str) else value if isinstance(value, list) else []


def _cloud_provider(meta: dict):
    """OpenCHAMI spells it `cloud-provider` for one node and `cloud_provider` in the cluster defaults."""
    return meta.get("cloud-provider") or meta.get("cloud_provider")


def _user_data_sources(chain: tuple) -> tuple:
    """The rows whose user-data a node gets: a component's own; else all of its groups' that have some
    (one unchanged, several combined); else its role's; else the site's."""
    for at, row in enumerate(chain):
        if row["user_data"] is None:
            continue
        if row["group_name"] is None:
            return (row,)
        return tuple(r for r in chain[at:] if r["group_name"] is not None and r["user_data"] is not None)
    return ()


def _user_data(sources: tuple) -> str:
    parts = sorted((row["group_name"], row["user_data"]) for row in sources if row["user_data"])
    if len(parts) > 1:
        return userdata.combine(parts)
    return parts[0][1] if parts else (sources[0]["user_data"] if sources else "")


def _vendor_data(sources: tuple) -> str:
    return sources[0]["vendor_data"] if sources else ""


def _numbered_hostname(meta: dict, nid) -> str | None:
    """`short-name` + the NID padded to `nid-length` digits (4 by default), as OpenCHAMI names nodes."""
    short_name = meta.get("short-name")
    if not isinstance(short_name, str) or not short_name or not isinstance(nid, int):
        return None
    length = meta.get("nid-length")
    if type(length) is not int or not 1 <= length <= 19:
        length = 4
    name = f"{short_name}{nid:0{length}d}"
    return name if is_boot_token(name) and len(name) <= 253 else None


class AnswerBuilder:
    """Builds NodeAnswers from node rows; prerenders scripts when the boot URL is configured."""

    # Where cloud-init's phone_home posts, added to every node's user-data (CHAMICORE_PHONE_HOME); None: not added.
    phone_home_url: str | None = None

    def __init__(self, base_url: str | None, retry_base: float, retry_max: float,
                 signer: ScriptSigner | None = None) -> None:
        self.base_url = base_url
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.signer = signer  # core.signing.ScriptSigner, or None: scripts are not signed

    def batch(self, previous=None) -> NodeBatch:
        """A builder for one load: the chunks of one snapshot share its resolution work.  `previous`, the
        index being replaced, lends the signatures of scripts that come out byte for byte the same."""
        return NodeBatch(self, previous)


class NodeBatch:
    def __init__(self, builder: AnswerBuilder, previous=None) -> None:
        self.builder = builder
        self._previous = previous.by_mac if previous is not None and builder.signer is not None else None
        self._unsigned: list[BootEntry] = []  # rendered scripts waiting for their signature (take_unsigned)
        self._scoped_for: tuple | None = None  # the (params, payloads) rows the two below were made from
        self._params = _Scoped((), has_mac=True)
        self._payloads = _Scoped((), has_mac=False)
        self._profiles = profiled.Profiles()
        # The template context of the node being built and why its templates failed (None: they did not).
        self._context: dict | None = None
        self._template_problem: str | None = None
        # One object per distinct value: every node's role, arch, groups and
        # identical user-data are the same few objects, not 100k copies.
        self._shared: dict = {}
        # Resolved cloud-init data per distinct payload chain.
        self._cloud: dict[tuple, tuple] = {}
        self._documents: dict[tuple, bytes] = {}

    def __call__(self, nodes, params, payloads) -> list[NodeAnswers]:
        if self._scoped_for is None or self._scoped_for[0] is not params or self._scoped_for[1] is not payloads:
            self._params = _Scoped(params, has_mac=True)
            self._payloads = _Scoped(payloads, has_mac=False)
            self._scoped_for = (params, payloads)
            self._cloud.clear()
            self._documents.clear()
        return [self._node(node) for node in nodes]

    def use_profiles(self, rows) -> None:
        """The profiles of this load (loader.load hands them over before the first chunk)."""
        self._profiles = profiled.Profiles(rows)
        self._cloud.clear()
        self._documents.clear()

    def _share(self, value):
        return self._shared.setdefault(value, value)

    def _node(self, node) -> NodeAnswers:
        node_id = node["id"]
        groups = self._share(tuple(node["groups"]))
        role = self._share(node["role"])
        macs = node["macs"]
        token = node["cloud_init_token"]
        if not (isinstance(token, str) and len(token) >= 16 and is_boot_token(token)):
            token = ""  # not from this schema (its CHECK allows no other): by address only
        profile = self._profiles.for_node(node, groups, role)
        cloud_init, hostname = self._cloud_init(node, groups, role, token, profile)
        values = (
            node_id,
            _text(node["nid"]),
            role,
            self._share(node["sub_role"]),
            hostname,
            self._share(node["arch"]),
            self._share(node["type"]),
            self._share(_text(node["rack"])),
            _text(node["unit"]),
            _text(node["slot"]),
            groups[0] if groups else "",
            self._share(",".join(groups)),
        )
        enabled = node["enabled"]
        nid = node["nid"]
        params = self._params
        by_mac = {mac: self._boot_entry(node_id, enabled, mac, profiled.boot_chain(
            params.chain(node_id, groups, role, mac, nid), profile), values, token) for mac in macs}
        if macs:
            primary = by_mac[macs[0]]
        else:
            primary = self._boot_entry(node_id, enabled, "", profiled.boot_chain(
                params.chain(node_id, groups, role, None, nid), profile), values, token)
        ips = [addr["ipAddress"] for addrs in node["ip_addrs"] for addr in addrs
               if isinstance(addr, dict) and isinstance(addr.get("ipAddress"), str)]
        return NodeAnswers(node_id, nid, by_mac, primary, cloud_init, ips)

    def _boot_entry(self, node_id: str, enabled: bool, mac: str, chain: tuple, values: tuple,
                    token: str) -> BootEntry:
        if not enabled:
            return BootEntry(node_id, mac, "", "", "", values, f"node {node_id} is disabled")
        if not chain:
            return BootEntry(node_id, mac, "", "", "", values, f"no boot parameters apply to node {node_id}")
        row = chain[0]
        profile = row.get("profile")
        cmdline = row["cmdline"]
        if profile is not None and profile.templated:
            cmdline, problem = profiled.rendered(profile, "cmdline", profile.cmdline,
                                                 self._context and {**self._context, "mac": mac})
            problem = problem or self._template_problem
            if problem is not None:
                return BootEntry(node_id, mac, "", "", "", values, f"node {node_id}: {problem}")
        if profile is not None and profile.arches:
            entry = self._arch_entries(node_id, mac, row, cmdline, profile, values, token)
        else:
            entry = self._with_script(profile, BootEntry(node_id, mac, row["kernel"], row["initrd"], cmdline, values,
                                                         None, None, token))
        builder = self.builder
        if builder.base_url is not None and mac and entry.wait_message is None:
            # The answer to the node's MAC; by name or nid (no MAC) the dispatcher renders one without the token.
            entry.body = render_bootscript(
                entry.kernel, entry.initrd, entry.cmdline, entry.values, node_id, mac, entry.chain_query,
                builder.base_url, 0, builder.retry_base, builder.retry_max, token, builder.signer is not None,
                entry.script)
            if builder.signer is not None:
                self._sign_later(mac, entry)
        return entry

    def _arch_entries(self, node_id: str, mac: str, row, cmdline: str, profile: profiled.BootProfile, values: tuple,
                      token: str) -> BootEntry:
        """The entry for the node's own architecture, holding the answers for the others (`arches`)."""
        entries: dict = {}
        for arch, boot in profile.arches.items():
            entries[arch] = self._with_script(profile, BootEntry(node_id, mac, boot["kernel"], boot["initrd"], cmdline,
                                                                 values, None, None, token, arch))
        if row["kernel"]:
            entries[profiled.ANY_ARCH] = self._with_script(profile, BootEntry(
                node_id, mac, row["kernel"], row["initrd"], cmdline, values, None, None, token))
        own = profiled.node_arch(values)
        entry = entries.get(own) or entries.get(profiled.ANY_ARCH)
        if entry is None:
            entry = BootEntry(node_id, mac, "", "", "", values,
                              profile.missing.replace("{node}", node_id).replace("{arch}", own))
        entries[profiled.MISSING] = profile.missing
        entry.arches = entries
        return entry

    def _with_script(self, profile: profiled.BootProfile | None, entry: BootEntry) -> BootEntry:
        """The entry with its profile's script rendered for it (one per architecture: a template may test
        `initrd`), or the entry made a wait when the script cannot be rendered for this node."""
        if profile is None or profile.script is None:
            return entry
        context = self._context and {**self._context, "mac": entry.mac}
        script, problem = profiled.rendered_script(profile, context, bool(entry.kernel), bool(entry.initrd))
        if problem is not None:
            return BootEntry(entry.node_id, entry.mac, "", "", "", entry.values, f"node {entry.node_id}: {problem}",
                             arch=entry.arch)
        entry.script = self._share(script)
        return entry

    def _sign_later(self, mac: str, entry: BootEntry) -> None:
        """The replaced index's signature when the script is unchanged (a reload re-signs only what changed);
        else the entry waits for take_unsigned: about 1 ms of RSA-2048 each, made off the event loop."""
        old = self._previous.get(mac) if self._previous is not None else None
        if old is not None and old.signature is not None and old.body == entry.body:
            entry.signature = old.signature
        else:
            self._unsigned.append(entry)

    def take_unsigned(self, shares: int) -> list[list[BootEntry]]:
        """The entries rendered since the last call that still need a signature, in `shares` lists for
        worker threads (sign_entries)."""
        pending, self._unsigned = self._unsigned, []
        return [share for share in (pending[i::shares] for i in range(shares)) if share]

    def _resolved_payloads(self, chain: tuple, groups: tuple) -> tuple:
        """(user-data bytes, vendor-data bytes, merged meta-data, instance_data.v1 but the node's address)
        of one payload chain, for nodes of these groups."""
        key = (tuple(map(id, chain)), groups)
        found = self._cloud.get(key)
        if found is None:
            vendor = next((row for row in chain if row["vendor_data"] is not None), None)
            meta = {}
            keys: list = []
            for row in reversed(chain):
                if row["meta_data"]:
                    meta.update(row["meta_data"])
                    keys.extend(k for k in _listed(row["meta_data"].get("public-keys")) if k not in keys)
            meta.pop("instance-id", None)
            if keys:
                meta["public-keys"] = keys
            found = self._cloud[key] = (self._document(_user_data_sources(chain), self._user_data),
                                        self._document(() if vendor is None else (vendor,), _vendor_data), meta,
                                        self._instance_data(meta, groups))
        return found

    def _user_data(self, sources: tuple) -> str:
        url = self.builder.phone_home_url
        return _user_data(sources) if url is None else userdata.with_phone_home(_user_data(sources), url)

    def _document(self, sources: tuple, render) -> bytes:
        """The bytes of a document made from these rows, made once and shared: the nodes that differ only in
        their own meta-data (instance info, say) hold one copy of their groups' user-data."""
        key = (render, *map(id, sources))
        found = self._documents.get(key)
        if found is None:
            found = self._documents[key] = render(sources).encode()
        return found

    def _instance_data(self, meta: dict, groups: tuple) -> dict:
        """OpenCHAMI's `instance_data.v1`, which its group configs read (`ds.meta_data.instance_data.v1...`)."""
        by_group = self._payloads.by_group
        described = {}
        for group in groups:
            row = by_group.get(group)
            described[group] = {"Description": (row.get("description") if row is not None else None)
                                or "No description Found", **((row["meta_data"] or {}) if row is not None else {})}
        vendor = {"version": "1.0", "cloud_init_base_url": meta.get("cloud-init-base-url") or meta.get("base-url"),
                  "cluster_name": meta.get("cluster-name"), "groups": described}
        v1 = {"availability_zone": meta.get("availability-zone"), "cloud_provider": _cloud_provider(meta),
              "instance_type": meta.get("instance-type"), "region": meta.get("region"),
              "public_keys": meta.get("public-keys"), "vendor_data": vendor}
        for values in (vendor, v1):
            for name in [name for name, value in values.items() if value is None or value == ""]:
                del values[name]
        return v1

    def _templated_documents(self, node, groups: tuple, role: str, hostname: str, profile: profiled.BootProfile,
                             chain: tuple, user_bytes: bytes, vendor_bytes: bytes) -> tuple[bytes, bytes]:
        """The node's user-data and vendor-data rendered from its profile's templates, where the profile is what
        gives them; the context is kept for the node's cmdline.  A template that fails makes the node wait."""
        context = self._context = profiled.node_context(node, groups, role, hostname, profile)
        documents = [user_bytes, vendor_bytes]
        for at, (what, compiled, sources) in enumerate((
                ("user-data", profile.user_data, _user_data_sources(chain)),
                ("vendor-data", profile.vendor_data,
                 next(((row,) for row in chain if row["vendor_data"] is not None), ())))):
            if sources != (profile.payload_row,):
                continue  # a more specific payload gives this document
            text, problem = profiled.rendered(profile, what, compiled, context)
            if problem is not None:
                self._template_problem = self._template_problem or problem
                text = f"#cloud-config\n# Chamicore: {problem}\n"
            documents[at] = (text or "").encode()
        return documents[0], documents[1]

    def _cloud_init(self, node, groups: tuple, role: str, token: str,
                    profile: profiled.BootProfile | None = None) -> tuple[CloudInitEntry, str]:
        node_id = node["id"]
        chain = profiled.payload_chain(self._payloads.chain(node_id, groups, role), profile)
        user_bytes, vendor_bytes, payload_meta, v1 = self._resolved_payloads(chain, groups)
        meta = {
            "local-hostname": _numbered_hostname(payload_meta, node["nid"]) or node_id,
            "component-id": node_id,
            "type": node["type"],
            "role": role,
            "sub-role": node["sub_role"],
            "nid": node["nid"],
            "arch": node["arch"],
            "groups": groups,
            "location": {"rack": node["rack"], "unit": node["unit"], "slot": node["slot"],
                         "subSlot": node["sub_slot"]},
            "interfaces": [{"mac": mac, "ipAddrs": addrs} for mac, addrs in zip(node["macs"], node["ip_addrs"],
                                                                                 strict=True)],
            **payload_meta,
        }
        hostname = str(meta.get("local-hostname") or node_id)
        meta.setdefault("hostname", hostname)
        self._context = self._template_problem = None
        if profile is not None and profile.templated:
            user_bytes, vendor_bytes = self._templated_documents(node, groups, role, hostname, profile, chain,
                                                                 user_bytes, vendor_bytes)
        if "cloud-provider" not in meta and (provider := _cloud_provider(meta)):
            meta["cloud-provider"] = provider
        if "instance_data" not in meta:
            address = next((addr["ipAddress"] for addrs in node["ip_addrs"] for addr in addrs
                            if isinstance(addr, dict) and isinstance(addr.get("ipAddress"), str)), None)
            meta["instance_data"] = {"v1": {**v1, "local_ipv4": address} if address else v1}
        meta_bytes = msgspec.json.encode(meta, order="sorted")
        # instance-id follows the cloud-init data itself: stable across restarts,
        # new only when what the node would receive changes.
        digest = hashlib.blake2b(digest_size=8)
        for part in (user_bytes, meta_bytes, vendor_bytes):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        # Spliced in front rather than re-encoded: key order means nothing to a YAML/JSON reader.
        meta_bytes = b'{"instance-id":"' + f"{node_id}-{digest.hexdigest()}".encode() + b'",' + meta_bytes[1:]
        return CloudInitEntry(node_id, user_bytes, meta_bytes, vendor_bytes, token), hostname


def sign_entries(signer: ScriptSigner, entries: list[BootEntry]) -> None:
    """Signs rendered entries before they are published; runs in a worker thread (the RSA signing releases
    the GIL, so threads sign in parallel and the event loop keeps answering meanwhile)."""
    for entry in entries:
        entry.signature = signer.value(entry.body)
