"""Discovery drivers and the host lists a Redfish or IPMI target names (shared by the admin API and the scanner)."""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from core.ipmi import endpoint_address, parse_address

DRIVERS: dict[str, str] = {
    "redfish": "walk a BMC's Redfish service (ServiceRoot, Systems, Managers, Chassis, EthernetInterfaces) and "
               "register the BMC, its nodes, their location, UUID, serial number and MACs",
    "csv": "register the nodes listed in a CSV document (header: id,mac,ip,nid,role,subRole,arch,rack,unit,slot,"
           "bmc,bmcAddress,systemPath; only mac is required)",
    "json": "register the nodes listed in a JSON array of objects with the CSV driver's fields",
    "ipmi": "read an IPMI BMC (RMCP+, UDP 623 unless host:port says otherwise): its system GUID, FRU 0 "
            "(manufacturer, product, serial) and LAN MAC/IP, and register the BMC and its node; power control "
            "then speaks IPMI to it",
    "snmp": "read a switch's forwarding table (BRIDGE-MIB, Q-BRIDGE-MIB) and LLDP neighbours over SNMP v2c or v3 and "
            "attach each learned MAC to the node its port names (the target's snmp.mapping rule)",
}

MAX_HOSTS = 65536  # one /16; a bigger range is most likely a typo
_HOST_RE = re.compile(r"[A-Za-z0-9._:%-]{1,253}")  # a DNS name, an IPv4 or an IPv6 address


class BadAddress(ValueError):
    pass


def base_url(host: str) -> str:
    """`10.0.0.5`, `10.0.0.5:8000`, `[fe80::1]` or `http://bmc:8000` -> the Redfish service's base URL."""
    if "://" not in host:
        if host.count(":") > 1 and not host.startswith("["):
            host = f"[{host}]"  # a bare IPv6 address
        host = "https://" + host
    try:
        parts = urlsplit(host)  # raises on an unclosed `[` or a netloc that NFKC-normalises to `/?#@:`
    except ValueError:
        raise BadAddress(f"not a host or URL: {host[:100]!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadAddress(f"not a host or URL: {host[:100]!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise BadAddress(f"bad port in {host[:100]!r}") from None
    return f"{parts.scheme}://{parts.netloc}"


def ipmi_url(host: str) -> str:
    """`10.0.0.5`, `10.0.0.5:6230`, `[fe80::1]:623` -> `ipmi://host:port`, what an IPMI BMC's endpoint records."""
    try:
        return endpoint_address(*parse_address(host))
    except ValueError as exc:
        raise BadAddress(str(exc)) from None


def endpoint_url(address: str) -> str:
    """A BMC endpoint's recorded address, normalised: `ipmi://host:port` for IPMI, else a Redfish base URL."""
    return ipmi_url(address.removeprefix("ipmi://")) if address.startswith("ipmi://") else base_url(address)


def expand(address: str, url: Callable[[str], str] = base_url) -> list[str]:
    """The addresses a target names, each made by `url` (Redfish base URLs unless told otherwise): one host or
    URL, a `first-last` range, or a CIDR."""
    address = address.strip()
    if not address:
        raise BadAddress("an address is required")
    if "/" in address and "://" not in address:
        try:
            network = ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise BadAddress(f"not a CIDR network: {address[:100]!r}") from None
        if network.num_addresses > MAX_HOSTS:
            raise BadAddress(f"{address} holds {network.num_addresses} addresses; at most {MAX_HOSTS} per target")
        hosts = list(network.hosts()) if network.num_addresses > 2 else list(network)
        return [url(str(h)) for h in hosts]
    if "-" in address and "://" not in address:
        first_text, _, last_text = address.partition("-")
        try:
            first, last = ipaddress.ip_address(first_text.strip()), ipaddress.ip_address(last_text.strip())
        except ValueError:
            return [url(address)]  # a host name with a dash
        if first.version != last.version or int(last) < int(first):
            raise BadAddress(f"not a range from low to high: {address[:100]!r}")
        if int(last) - int(first) + 1 > MAX_HOSTS:
            raise BadAddress(f"{address} holds more than {MAX_HOSTS} addresses")
        return [url(str(ipaddress.ip_address(n))) for n in range(int(first), int(last) + 1)]
    return [url(address)]


def snmp_address(address: str) -> str:
    """`switch1`, `10.0.0.2:1161` or `[fe80::2]:161` -> `snmp://host:port` (RFC 4088), the switch a target reads."""
    address = address.strip()
    if "://" in address or "/" in address:
        raise BadAddress(f"an snmp target's address is host or host:port, not {address[:100]!r}")
    if address.count(":") > 1 and not address.startswith("["):
        address = f"[{address}]"  # a bare IPv6 address
    try:
        parts = urlsplit("snmp://" + address)
        port = 161 if parts.port is None else parts.port
    except ValueError:
        raise BadAddress(f"not a host or host:port: {address[:100]!r}") from None
    if not address:
        raise BadAddress("an address is required")
    if not parts.hostname or not _HOST_RE.fullmatch(parts.hostname) or not 0 < port < 65536:
        raise BadAddress(f"not a host or host:port: {address[:100]!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"snmp://{host}:{port}"


# How the drivers that scan address ranges spell each host they visit.
HOST_URLS: dict[str, Callable[[str], str]] = {"redfish": base_url, "ipmi": ipmi_url}


def scan_hosts(target) -> list[str]:
    """The "hosts" a scan of this target visits: base URLs for redfish, the switch for snmp, `-` for a node list."""
    if target["driver"] == "snmp":
        return [snmp_address(target["address"])]
    if target["driver"] == "ipmi":
        return expand(target["address"], ipmi_url)
    return expand(target["address"]) if target["driver"] == "redfish" else ["-"]


async def create_scan(conn, targets, requested_by: str) -> str:
    """A pending scan over these target rows, one row per host; the scanner is woken by its trigger."""
    scan_id = f"scan-{secrets.token_hex(4)}"
    await conn.execute("INSERT INTO discovery.scans (id, requested_by) VALUES ($1, $2)", scan_id, requested_by)
    hosts = [(t["id"], host) for t in targets for host in scan_hosts(t)]
    await conn.execute("INSERT INTO discovery.scan_hosts (scan_id, target_id, host) "
                       "SELECT $1, t, h FROM unnest($2::text[], $3::text[]) AS u(t, h) ON CONFLICT DO NOTHING",
                       scan_id, [t for t, _ in hosts], [h for _, h in hosts])
    await conn.execute("UPDATE discovery.targets SET last_scan_at = now() WHERE id = ANY($1::text[])",
                       [t["id"] for t in targets])
    return scan_id
