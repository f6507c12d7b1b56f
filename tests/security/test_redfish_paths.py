"""A BMC's answer names the paths the client follows next: none of them may move the credential to another host."""

import http.server
import threading

import aiohttp
import pytest

from sync.redfish import RedfishClient, RedfishError


class Listener(http.server.BaseHTTPRequestHandler):
    """Another host, recording any request that reaches it."""

    seen: list = []

    def do_GET(self):
        Listener.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("path", ["@127.0.0.1:{port}/redfish/v1/Systems/1", ".localhost:{port}/x",
                                  "//127.0.0.1:{port}/redfish/v1", "/redfish/v1/Systems/1\r\nHost: x", "Systems/1"])
async def test_a_reported_path_outside_redfish_v1_is_refused_before_anything_is_sent(path):
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    Listener.seen = []
    try:
        async with aiohttp.ClientSession() as session:
            # The BMC itself is at a closed port; the other host listens.
            client = RedfishClient(session, "http://127.0.0.1", "root", "bmc-secret", timeout_s=2)
            with pytest.raises(RedfishError, match="not a /redfish/v1 path"):
                await client.get(path.format(port=other.server_address[1]))
    finally:
        other.shutdown()
        other.server_close()
    assert Listener.seen == []
