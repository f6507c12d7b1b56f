"""A real IPMI BMC for tests: OpenIPMI's `ipmi_sim` on 127.0.0.1 and a free UDP port.

The test writes everything the simulator reads (`lan.conf`, the emulator
command file, two small shell programs) into a fresh directory:

- a user (`USERNAME`/`PASSWORD`, admin) on LAN channel 1, IPMI 1.5 and 2.0
  (RMCP+) both allowed;
- the BMC's GUID (`guid=`, 32 hex digits), answered by Get System GUID;
- FRU 0 with a product info area (`manufacturer`, `product`, `serial`);
  ipmi_sim answers at most 32 bytes per Read FRU Data (0xC8 beyond), as
  many real BMCs do, so a reader must read in small chunks;
- the LAN configuration (`mac`, `ip`) answered by Get LAN Configuration
  Parameters, through ipmi_sim's `lan_config_program`;
- chassis control through ipmi_sim's `chassis_control` program, so a power
  change is real state kept in a file: `power_state()` reads it back and
  `requests()` lists every chassis action the BMC performed ("power 1",
  "power 0", "reset 1", "shutdown 1"), which is what a test counts to prove a
  request reached the BMC once.  "shutdown" (soft off) turns the power off,
  as a guest that honours ACPI would; "reset" leaves the power on.

SOL, for the serial-console tests: `IpmiSim(sol_port=PORT)` adds
`sol "tcp:127.0.0.1:PORT" 115200` to `lan.conf`.  ipmi_sim is then the *client*
of that port: at start it connects to a TCP server the test runs there (the
node's serial line), and keeps retrying until one listens; an RMCP+ client that
activates SOL payload instance 1 on this BMC talks to whatever that server
reads and writes.  `history=` is not configured (payload instance 2 stays off).

`stop()` kills the simulator (its UDP port then answers nothing, like a dead
BMC); `close()` also removes the directory.  Everything runs as the test's
user; nothing listens anywhere but 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers.ports import free_udp_port

USERNAME, PASSWORD = "admin", "ipmi-secret"
BINARY = "/usr/bin/ipmi_sim"


def _fru_text(value: str) -> bytes:
    """An 8-bit ASCII type/length field (type 3, up to 63 bytes)."""
    data = value.encode("latin-1")
    if len(data) > 63:
        raise ValueError(f"FRU field longer than 63 bytes: {value!r}")
    return bytes([0xC0 | len(data)]) + data


def _checksummed(area: bytes, multiple: int) -> bytes:
    """Pad to a multiple of `multiple` bytes with room for the zero checksum, then append it."""
    area += b"\x00" * (-(len(area) + 1) % multiple)
    return area + bytes([(-sum(area)) & 0xFF])


def fru_image(manufacturer: str, product: str, serial: str) -> bytes:
    """FRU 0 as the IPMI Platform Management FRU spec lays it out: common header + product info area."""
    fields = b"".join(_fru_text(v) for v in (manufacturer, product, "", "", serial, "", "")) + b"\xc1"
    body = bytes([0x01, 0x00, 0x00]) + fields  # format version, length (set below), language English
    product_area = bytearray(_checksummed(body, 8))
    product_area[1] = len(product_area) // 8
    product_area[-1] = (-sum(product_area[:-1])) & 0xFF
    header = _checksummed(bytes([0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]), 8)  # product area at offset 8
    return header + bytes(product_area)


_CHASSIS = """#!/bin/sh
# ipmi_sim's chassis_control program: "get power ..." prints item:value lines; "set power 1" (reset 1,
# shutdown 1, boot pxe...) acts.  Every action is appended to the requests file, one "item value" a line.
state="{dir}/power"
[ -f "$state" ] || echo 0 > "$state"
op=$1; shift
if [ "$op" = get ]; then
    for item in "$@"; do
        case $item in
            power) echo "power:$(cat "$state")" ;;
            boot) echo "boot:none" ;;
        esac
    done
    exit 0
fi
while [ $# -ge 2 ]; do
    echo "$1 $2" >> "{dir}/requests"
    case $1 in
        power) echo "$2" > "$state" ;;
        shutdown) echo 0 > "$state" ;;
    esac
    shift 2
done
exit 0
"""

_LANCFG = """#!/bin/sh
# ipmi_sim's lan_config_program: "get NAME..." prints NAME:VALUE lines for the LAN parameters asked.
[ "$1" = get ] || exit 0
shift
for item in "$@"; do
    case $item in
        ip_addr_src) echo "ip_addr_src:static" ;;
        ip_addr) echo "ip_addr:{ip}" ;;
        mac_addr) echo "mac_addr:{mac}" ;;
        subnet_mask) echo "subnet_mask:255.255.255.0" ;;
        default_gw_ip_addr) echo "default_gw_ip_addr:0.0.0.0" ;;
        default_gw_mac_addr) echo "default_gw_mac_addr:00:00:00:00:00:00" ;;
        backup_gw_ip_addr) echo "backup_gw_ip_addr:0.0.0.0" ;;
        backup_gw_mac_addr) echo "backup_gw_mac_addr:00:00:00:00:00:00" ;;
    esac
done
exit 0
"""


class IpmiSim:
    def __init__(self, *, guid: str = "a1b2c3d4e5f60718293a4b5c6d7e8f90", manufacturer: str = "Chamicore Labs",
                 product: str = "SimNode 1000", serial: str = "SN-0001", mac: str = "02:00:00:00:10:01",
                 ip: str = "10.50.0.1", power: int = 0, username: str = USERNAME, password: str = PASSWORD,
                 sol_port: int | None = None, name: str = "bmc") -> None:
        if len(guid) != 32 or any(c not in "0123456789abcdef" for c in guid):
            raise ValueError("guid is 32 lower-case hex digits")
        self.guid, self.mac, self.ip = guid, mac, ip
        self.manufacturer, self.product, self.serial = manufacturer, product, serial
        self.username, self.password = username, password
        self.dir = Path(tempfile.mkdtemp(prefix="chamicore-ipmisim-"))
        self.port = free_udp_port()
        self.address = f"127.0.0.1:{self.port}"
        (self.dir / "state").mkdir()
        (self.dir / "power").write_text(f"{1 if power else 0}\n")
        (self.dir / "requests").write_text("")
        for script, text in (("chassis.sh", _CHASSIS.format(dir=self.dir)),
                             ("lancfg.sh", _LANCFG.format(ip=ip, mac=mac))):
            (self.dir / script).write_text(text)
            (self.dir / script).chmod(0o755)
        fru = fru_image(manufacturer, product, serial)
        lan = [
            f'name "{name}"',
            "set_working_mc 0x20",
            "  startlan 1",
            f"    addr 127.0.0.1 {self.port}",
            "    priv_limit admin",
            *(f"    allowed_auths_{p} none md2 md5 straight" for p in ("callback", "user", "operator", "admin")),
            f"    guid {guid}",
            f'    lan_config_program "{self.dir / "lancfg.sh"}"',
            "  endlan",
            f'  chassis_control "{self.dir / "chassis.sh"}"',
            f'  user 2 true "{username}" "{password}" admin 10 none md2 md5 straight',
        ]
        if sol_port is not None:
            lan.append(f'  sol "tcp:127.0.0.1:{sol_port}" 115200')
        (self.dir / "lan.conf").write_text("\n".join(lan) + "\n")
        emu = [
            "mc_setbmc 0x20",
            "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr",
            f"mc_set_guid 0x20 {guid}",
            f"mc_add_fru_data 0x20 0 {len(fru)} data " + " ".join(f"0x{b:02x}" for b in fru),
            "sel_enable 0x20 1000 0x0a",
            "mc_enable 0x20",
        ]
        (self.dir / "sim.emu").write_text("\n".join(emu) + "\n")
        self.log = self.dir / "ipmi_sim.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> IpmiSim:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [BINARY, "-c", str(self.dir / "lan.conf"), "-f", str(self.dir / "sim.emu"), "-n",
                 "-s", str(self.dir / "state")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        # Ready once it answers an RMCP presence ping (ASF, no session needed) on its UDP port.
        ping = bytes([0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x00, 0x00, 0x00])
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.1)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"ipmi_sim exited: {self.log.read_text()[-2000:]}")
                sock.sendto(ping, ("127.0.0.1", self.port))
                try:
                    sock.recvfrom(512)
                    return self
                except (TimeoutError, ConnectionRefusedError):
                    continue
        raise TimeoutError("ipmi_sim did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def power_state(self) -> str:
        """The chassis power as the simulator's own state holds it: "on" or "off"."""
        return "on" if (self.dir / "power").read_text().strip() == "1" else "off"

    def set_power_state(self, on: bool) -> None:
        """Change the chassis power behind the BMC's back, as a button press or another client would."""
        (self.dir / "power").write_text("1\n" if on else "0\n")

    def requests(self) -> list[str]:
        """The chassis actions the BMC performed, in order ("power 1", "reset 1", "shutdown 1", ...)."""
        return [line for line in (self.dir / "requests").read_text().splitlines() if line]

    def __enter__(self) -> IpmiSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
