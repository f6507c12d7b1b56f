"""The ipmi driver: read one IPMI BMC and describe what it manages, as the redfish driver does (walk.FoundBmc).

An IPMI BMC manages one system, its chassis, so a scan registers the BMC
(its LAN MAC and IP) and one node (its system GUID and FRU 0: manufacturer,
product, serial), mapped to the endpoint by the path `IPMI_SYSTEM`.  The
endpoint's address is `ipmi://host:port`: what tells power control to speak
IPMI to it.  core/ipmi.py has already checked every value the BMC gave.
"""

from __future__ import annotations

from core.ipmi import IpmiClient
from sync.discovery.walk import FoundBmc, FoundSystem

IPMI_SYSTEM = "ipmi:chassis"  # the one system an IPMI endpoint maps (migration 0021 allows this path)


async def read_bmc(client: IpmiClient) -> FoundBmc:
    facts = await client.facts()
    system = FoundSystem(path=IPMI_SYSTEM, name="", uuid=facts.guid, serial=facts.serial,
                         manufacturer=facts.manufacturer, model=facts.product, power_state=facts.power_state, nics=[])
    return FoundBmc(address=client.address, uuid=None, macs=[facts.mac] if facts.mac else [], systems=[system],
                    dropped=facts.dropped, ips=[facts.ip] if facts.ip else [])
