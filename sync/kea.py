"""Kea DHCPv4 host reservations kept in step with the inventory.

Every Ethernet interface with an IPv4 address inside one of Kea's subnets
becomes a reservation (hw-address, ip-address, hostname, next-server),
marked `user-context: {"chamicore": true}` so that only ours are ever
touched.  Boot files come from client classes the sync also maintains:
iPXE clients (user class "iPXE") get the boot path's first-stage script,
UEFI HTTP boot clients (vendor class "HTTPClient") the URL of iPXE's EFI
program for their architecture (no TFTP), other PXE firmware the iPXE
binary for its architecture, by TFTP from next-server.

Stock Kea 2.2 has no host_cmds hook, so the sync goes through the control
agent: config-get, reconcile, config-test, config-set, config-write, and
only when something changed.  A Kea that lists `reservation-add` (the
host_cmds hook) gets its reservations through reservation-add and
reservation-del instead, and a config push only for the client classes.  Bad data (an IP outside every subnet, an IP
reserved twice) is reported and skipped; the rest is still pushed.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging

import aiohttp
import asyncpg

from core import tracing
from sync.service import Job

log = logging.getLogger("chamicore.sync.kea")

MARK = {"chamicore": True}
CLASSES = ("chamicore-ipxe", "chamicore-http-x86-64", "chamicore-http-arm64", "chamicore-pxe-efi",
           "chamicore-pxe-bios")

# UEFI's HTTP boot client sends vendor class (option 60) "HTTPClient:Arch:xxxxx:UNDI:yyyzzz" and its processor
# architecture (option 93, IANA "Processor Architecture Types"): 0x0010 x64 UEFI HTTP, 0x0013 arm64 UEFI HTTP.
HTTP_CLIENT = "substring(option[60].hex,0,10) == 'HTTPClient'"
HTTP_ARCHES = (("chamicore-http-x86-64", "0x0010", "ipxe.efi"), ("chamicore-http-arm64", "0x0013", "ipxe-arm64.efi"))

INTERFACES = """
SELECT i.mac, i.ip_addrs, c.id FROM smd.ethernet_interfaces i
JOIN smd.components c ON c.id = i.component_id
WHERE jsonb_array_length(i.ip_addrs) > 0 ORDER BY c.id, i.mac
"""


class KeaError(RuntimeError):
    pass


def client_classes(boot_url: str, next_server: str, efi_url: str | None = None) -> list[dict]:
    """Kea's classes, first match first: `efi_url` is where the EFI programs are (CHAMICORE_EFI_URL), by default
    the boot path's /boot/v1/ipxe (hotpath/efi.py)."""
    efi_base = efi_url or f"{boot_url}/boot/v1/ipxe"
    # The firmware takes the reply as an HTTP boot offer only when it carries option 60 "HTTPClient" too.
    http_offer = [{"name": "vendor-class-identifier", "data": "HTTPClient", "always-send": True}]
    return [
        {"name": "chamicore-ipxe", "test": "option[77].hex == 'iPXE'",
         "boot-file-name": f"{boot_url}/boot/v1/boot.ipxe", "user-context": MARK},
        *({"name": name, "test": f"not member('chamicore-ipxe') and {HTTP_CLIENT} and option[93].hex == {arch}",
           "boot-file-name": f"{efi_base}/{program}", "option-data": http_offer, "user-context": MARK}
          for name, arch, program in HTTP_ARCHES),
        {"name": "chamicore-pxe-efi", "test": "not member('chamicore-ipxe') and "
                                              "(option[93].hex == 0x0007 or option[93].hex == 0x0009)",
         "next-server": next_server, "boot-file-name": "ipxe.efi", "user-context": MARK},
        {"name": "chamicore-pxe-bios", "test": "not member('chamicore-ipxe') and not member('chamicore-pxe-efi') "
                                               f"and not ({HTTP_CLIENT})",
         "next-server": next_server, "boot-file-name": "undionly.kpxe", "user-context": MARK},
    ]


def desired_reservations(rows, subnets: list[dict], next_server: str) -> tuple[dict[int, list[dict]], list[str]]:
    """Reservations per subnet id, and the problems found on the way."""
    networks = [(ipaddress.ip_network(s["subnet"], strict=False), s["id"]) for s in subnets]
    by_subnet: dict[int, list[dict]] = {}
    taken: dict[str, str] = {}
    problems: list[str] = []
    for row in rows:
        for address in row["ip_addrs"]:
            try:
                ip = ipaddress.ip_address(address.get("ipAddress", ""))
            except (ValueError, AttributeError):
                continue
            if ip.version != 4:
                continue
            subnet_id = next((sid for net, sid in networks if ip in net), None)
            if subnet_id is None:
                problems.append(f"{row['id']} ({row['mac']}): {ip} is outside every Kea subnet; skipped")
                continue
            if str(ip) in taken:
                problems.append(f"{row['id']} ({row['mac']}): {ip} is already reserved for {taken[str(ip)]}; skipped")
                continue
            taken[str(ip)] = row["id"]
            by_subnet.setdefault(subnet_id, []).append({
                "hw-address": row["mac"], "ip-address": str(ip), "hostname": row["id"],
                "next-server": next_server, "user-context": MARK})
            break  # one reservation per interface: its first usable address
    return by_subnet, problems


def reconcile(dhcp4: dict, by_subnet: dict[int, list[dict]], classes: list[dict]) -> dict:
    """The new Dhcp4 configuration: ours replaced, everyone else's left as it was."""
    config = copy.deepcopy(dhcp4)
    for subnet in config.get("subnet4", []):
        theirs = [r for r in subnet.get("reservations", []) if r.get("user-context", {}).get("chamicore") is not True]
        subnet["reservations"] = theirs + by_subnet.get(subnet["id"], [])
    others = [c for c in config.get("client-classes", []) if c.get("name") not in CLASSES]
    config["client-classes"] = others + classes
    return config


class KeaSync(Job):
    name = "kea"
    channel = "chamicore_boot"  # interface and component changes
    period_s = 60.0
    debounce_s = 0.2

    def __init__(self, dsn: str, kea_url: str, boot_url: str, next_server: str = "", efi_url: str | None = None) -> None:
        super().__init__(dsn)
        self.kea_url = kea_url
        self.boot_url = boot_url
        self.efi_url = efi_url
        self.next_server = next_server or str(ipaddress.ip_address("0.0.0.0"))
        self.problems: list[str] = []
        self.reservations = 0
        self.pushes = 0

    def counts(self) -> dict:
        return {"passes": self.passes, "reservations": self.reservations, "pushes": self.pushes,
                "problems": self.problems[:50]}

    async def command(self, session: aiohttp.ClientSession, command: str, arguments: dict | None = None) -> dict:
        body: dict[str, object] = {"command": command, "service": ["dhcp4"]}
        if arguments is not None:
            body["arguments"] = arguments
        async with session.post(self.kea_url, json=body) as response:
            answer = await response.json(content_type=None)
        result = answer[0] if isinstance(answer, list) else answer
        if result.get("result") != 0:
            raise KeaError(f"Kea refused {command}: {result.get('text')}")
        return result

    async def work_once(self, conn: asyncpg.Connection) -> bool:
        await asyncio.sleep(self.debounce_s)  # a burst of changes becomes one push
        rows = await conn.fetch(INTERFACES)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session, tracing.async_span("kea sync"):  # a span a pass
            listed = (await self.command(session, "list-commands")).get("arguments") or []
            host_cmds = "reservation-add" in listed
            current = (await self.command(session, "config-get"))["arguments"]
            current.pop("hash", None)
            dhcp4 = current["Dhcp4"]
            by_subnet, problems = desired_reservations(rows, dhcp4.get("subnet4", []), self.next_server)
            self.problems = problems
            self.reservations = sum(len(v) for v in by_subnet.values())
            for problem in problems:
                log.warning("kea: %s", problem)
            classes = client_classes(self.boot_url, self.next_server, self.efi_url)
            if host_cmds:
                await self._sync_host_cmds(session, dhcp4, by_subnet)
                # Reservations live in the host database here; the config carries only the classes.
                wanted = reconcile(dhcp4, {}, classes)
                for mine, theirs in zip(wanted.get("subnet4", []), dhcp4.get("subnet4", []), strict=True):
                    mine["reservations"] = theirs.get("reservations", [])
            else:
                wanted = reconcile(dhcp4, by_subnet, classes)
            if wanted != dhcp4:
                await self.command(session, "config-test", {"Dhcp4": wanted})
                await self.command(session, "config-set", {"Dhcp4": wanted})
                await self.command(session, "config-write", {})
                self.pushes += 1
                log.info("kea: pushed the configuration (%d reservations)", self.reservations)
        return False

    async def _sync_host_cmds(self, session: aiohttp.ClientSession, dhcp4: dict,
                              by_subnet: dict[int, list[dict]]) -> None:
        for subnet in dhcp4.get("subnet4", []):
            subnet_id = subnet["id"]
            answer = await self.command(session, "reservation-get-all", {"subnet-id": subnet_id})
            present = {h["hw-address"]: h for h in (answer.get("arguments") or {}).get("hosts", [])
                       if h.get("user-context", {}).get("chamicore") is True and "hw-address" in h}
            wanted = {r["hw-address"]: r for r in by_subnet.get(subnet_id, [])}
            for mac, host in present.items():
                target = wanted.get(mac)
                if target is None or any(host.get(k) != v for k, v in target.items()):
                    await self.command(session, "reservation-del", {
                        "subnet-id": subnet_id, "identifier-type": "hw-address", "identifier": mac})
                    self.pushes += 1
            for mac, reservation in wanted.items():
                host = present.get(mac)
                if host is None or any(host.get(k) != v for k, v in reservation.items()):
                    await self.command(session, "reservation-add",
                                       {"reservation": {**reservation, "subnet-id": subnet_id}})
                    self.pushes += 1
