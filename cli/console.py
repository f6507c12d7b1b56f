"""`chamicore console NODE`: the node's serial console (IPMI Serial-over-LAN through the admin API's websocket).

On a terminal, stdin is put in raw mode (every key goes to the node, Ctrl-C
included) and `~.` at the start of a line detaches, as in ssh (`~~` sends one
`~`).  Otherwise stdin and stdout are plain pipes: what is read is typed into
the node, what the node writes is written out, and the end of stdin detaches.
Status lines go to stderr, so stdout carries the node's bytes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import sys
import termios
import tty
import urllib.parse

import aiohttp

from cli.client import HINTS, SERVICE, ApiClient, exit_code
from cli.command import Commands, Invocation, handles
from cli.errors import EXIT_SERVER, CLIError

PATH = "/console/v1/nodes/"
DETACH = b"."
ESCAPE = b"~"


def register(commands: Commands) -> None:
    parser = handles(commands.add_parser(
        "console", help="attach to a node's serial console through its BMC (IPMI SOL); `~.` detaches",
        description="Needs the write:console scope. One session per node at a time."), attach)
    parser.add_argument("node", metavar="NODE")


def attach(run: Invocation) -> int:
    client: ApiClient = run.client
    return asyncio.run(_session(client, run.args.node))


def websocket_url(endpoint: str, node: str) -> str:
    parts = urllib.parse.urlsplit(endpoint)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + PATH
                                    + urllib.parse.quote(node, safe=""), "", ""))


async def _session(client: ApiClient, node: str) -> int:
    url = websocket_url(client.endpoint, node)
    headers = {"Authorization": f"Bearer {token}"} if (token := client.token()) else {}
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, headers=headers, heartbeat=30, max_msg_size=1 << 20)
        except aiohttp.WSServerHandshakeError as exc:
            raise CLIError(SERVICE, f"GET {PATH}{node}: {exc.status} {exc.message} (no websocket there)",
                           "is the admin API a version with the serial console?", exit_code(exc.status)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CLIError(SERVICE, f"cannot reach {client.endpoint} ({exc})",
                           "is it running? `chamicore up` starts everything; or set CHAMICORE_ENDPOINT",
                           EXIT_SERVER) from None
        async with ws:
            attached = await _wait_attached(ws, node)
            print(f"[attached to the console of {node} through BMC {attached.get('bmc')}; "
                  f"{'~. detaches' if sys.stdin.isatty() else 'end of input detaches'}]", file=sys.stderr)
            reason = await _bridge(ws)
            print(f"\r\n[{reason}]", file=sys.stderr)
    return 0


async def _wait_attached(ws: aiohttp.ClientWebSocketResponse, node: str) -> dict:
    """The server's first word: attached, or a problem (then a close) said as a CLI error."""
    message = await ws.receive()
    body: dict = {}
    if message.type == aiohttp.WSMsgType.TEXT:
        with contextlib.suppress(ValueError):
            body = json.loads(message.data)
        if isinstance(body, dict) and "attached" in body:
            return body
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, int):
        code = ws.close_code or 0
        status = code - 4000 if 4400 <= code < 4600 else 502
    detail = (body.get("detail") if isinstance(body, dict) else None) or "the console closed before it attached"
    hint = {409: "wait for the other session to end, or check the node's BMC (`chamicore discovery`)",
            502: "check the BMC's credential and that Serial-over-LAN is enabled on it",
            504: "check that the BMC is reachable from the admin API"}.get(status, HINTS.get(status))
    raise CLIError(SERVICE, f"console {node}: {status} {detail}", hint, exit_code(status))


async def _bridge(ws: aiohttp.ClientWebSocketResponse) -> str:
    loop = asyncio.get_running_loop()
    typed: asyncio.Queue[bytes | None] = asyncio.Queue()
    stdin = sys.stdin.fileno()
    terminal = sys.stdin.isatty()
    escape = EscapeReader() if terminal else None

    def readable() -> None:
        data = os.read(stdin, 4096)
        if not data:
            typed.put_nowait(None)
            return
        if escape is not None:
            data, detach = escape.feed(data)
            if data:
                typed.put_nowait(data)
            if detach:
                typed.put_nowait(None)
            return
        typed.put_nowait(data)

    async def to_node() -> str:
        while (data := await typed.get()) is not None:
            await ws.send_bytes(data)
        return "detached"

    async def to_screen() -> str:
        out = sys.stdout.buffer
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                out.write(message.data)
                out.flush()
            elif message.type == aiohttp.WSMsgType.ERROR:
                return f"connection lost: {ws.exception()}"
        extra = ws.close_code if ws.close_code not in (None, 1000) else ""
        return f"console ended by the server {extra}".rstrip()

    async def from_file() -> None:
        # A regular file cannot be watched by the event loop; it never blocks either, so read it in turns.
        while True:
            data = await loop.run_in_executor(None, os.read, stdin, 4096)
            typed.put_nowait(data or None)
            if not data:
                return

    saved = termios.tcgetattr(stdin) if terminal else None
    watched = not stat.S_ISREG(os.fstat(stdin).st_mode)
    reading = None
    try:
        if terminal:
            tty.setraw(stdin)
        if watched:
            loop.add_reader(stdin, readable)
        else:
            reading = asyncio.create_task(from_file())
        tasks = [asyncio.create_task(to_node()), asyncio.create_task(to_screen())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return done.pop().result()
    finally:
        if watched:
            loop.remove_reader(stdin)
        if reading is not None:
            reading.cancel()
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


class EscapeReader:
    """ssh's escape: `~` right after a newline (or at the very start) is held; `~.` detaches, `~~` is one `~`,
    `~` and anything else passes both."""

    def __init__(self) -> None:
        self.line_start = True
        self.held = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        for byte in data:
            char = bytes([byte])
            if self.held:
                self.held = False
                if char == DETACH:
                    return bytes(out), True
                if char != ESCAPE:
                    out += ESCAPE
                out += char
            elif self.line_start and char == ESCAPE:
                self.held = True
                continue
            else:
                out += char
            self.line_start = char in (b"\r", b"\n")
        return bytes(out), False
