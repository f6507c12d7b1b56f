"""`chamicore bootscript MAC`: what a node would get from the boot path, not counted as a boot.

The script asked for by MAC is the node's own: its cloud-init seed URL holds the
node's secret token, which reads the node's cloud-init (user-data may hold
secrets) from anywhere, so treat the output like that data.  Rotate a token
that got out with POST /hsm/v2/State/Components/<id>/cloud-init-seed/rotate.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request

from cli.command import Commands, Invocation, handles
from cli.errors import EXIT_SERVER, EXIT_USAGE, CLIError


def register(commands: Commands) -> None:
    preview = handles(commands.add_parser(
        "bootscript", help="what a node booting with this MAC gets (not counted in telemetry)"), bootscript)
    preview.add_argument("mac")
    preview.add_argument("--boot-endpoint", help="the boot path (default CHAMICORE_BOOT_URL or CHAMICORE_BOOT_LISTEN)")


def bootscript(run: Invocation) -> int:
    # Asked from this machine: its own address for the boot path will do.
    base = run.args.boot_endpoint or run.config.boot_url or run.config.boot_listen.local_url
    url = f"{base.rstrip('/')}/boot/v1/bootscript?" + urllib.parse.urlencode({"mac": run.args.mac})
    request = urllib.request.Request(url, headers={"X-Chamicore-Preview": "1"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            sys.stdout.write(response.read().decode())
        return 0
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read().decode(errors="replace")
        try:
            detail = json.loads(body).get("detail", body)
        except ValueError:
            detail = body[:200]
        raise CLIError("boot path", f"{exc.code}: {detail}", "check the MAC", EXIT_USAGE) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CLIError("boot path", f"cannot reach {base} ({getattr(exc, 'reason', exc)})",
                       "is it running? or give --boot-endpoint", EXIT_SERVER) from None
