"""An outside OpenID provider for token-exchange tests."""

from __future__ import annotations

import http.server
import json
import threading
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers.ports import free_port


class IdentityProvider:
    """A stand-in for an outside OpenID provider (Keycloak, Dex...) that cannot run here:
    a real RSA key and a real JWKS served over HTTP; the tokens it signs are real JWTs."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": "idp-1", "use": "sig"}]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}/realms/hpc"
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, sub: str, aud: str = "chamicore", exp: int = 300) -> str:
        now = int(time.time())
        return jwt.encode({"iss": self.issuer, "sub": sub, "aud": aud, "iat": now, "exp": now + exp}, self.key,
                          algorithm="RS256", headers={"kid": "idp-1"})

    def close(self):
        self.server.shutdown()
        self.server.server_close()
