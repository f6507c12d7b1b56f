"""A small Redfish client over aiohttp: GET a resource, POST an action, and errors that say what to do.

TLS is verified unless the endpoint is explicitly marked insecure.  Each
error knows whether trying again may help (a timeout, a refused
connection, 5xx, 429) or not (wrong credentials, an unsupported action),
and whether the request may have been acted on all the same: it may when
it was out and no answer came (a timeout, a connection lost) or the answer
does not say it was not (500, and a gateway's 502 or 504); it was not when
no connection was made or the BMC refused it (4xx, 501, 503).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl

import aiohttp


class RedfishError(Exception):
    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 may_have_acted: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.may_have_acted = may_have_acted


class CredentialsRejected(RedfishError):
    pass


def _reason(status: int, body: str) -> str:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.strip()[:200]
    return f"HTTP {status}" + (f": {message}" if message else "")


READ_RETRY_S = 0.2


class RedfishClient:
    """One Redfish service (`base` is `scheme://host[:port]`), sharing the caller's aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, base: str, username: str | None, password: str | None, *,
                 insecure: bool = False, timeout_s: float = 10.0, credential_id: str | None = None,
                 bmc_id: str | None = None) -> None:
        self.session = session
        self.base = base.rstrip("/")
        self.headers = {"Accept": "application/json"}
        if username is not None:
            pair = f"{username}:{password or ''}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self.ssl: ssl.SSLContext | bool = False if insecure else ssl.create_default_context()
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.credential_id = credential_id
        self.bmc_id = bmc_id

    async def get(self, path: str) -> dict:
        # A read changes nothing, so one that failed in passing (no connection, 5xx, 429) is tried once more
        # before it fails a scan host or a verification.
        try:
            return await self._request("GET", path)
        except RedfishError as exc:
            if not exc.retryable:
                raise
            await asyncio.sleep(READ_RETRY_S)
            return await self._request("GET", path)

    async def post(self, path: str, body: dict) -> dict:
        return await self._request("POST", path, body)

    async def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        # Paths come from the BMC's own answers: one not starting with /redfish/v1 (`@evil.example/x`)
        # would send the credential to another host.
        if not (path == "/redfish/v1" or path.startswith("/redfish/v1/")) or not path.isprintable() or " " in path:
            raise RedfishError(f"{self.base}: refused to follow {path[:80]!r}, which is not a /redfish/v1 path")
        url = self.base + path
        try:
            async with self.session.request(method, url, json=body, headers=self.headers, ssl=self.ssl,
                                            timeout=self.timeout) as response:
                text = await response.text()
                if response.status in (401, 403):
                    which = f"credential {self.credential_id!r}" if self.credential_id else "the credentials"
                    raise CredentialsRejected(
                        f"{self.base} rejected {which} ({_reason(response.status, text)}); fix the username or "
                        f"secret with PATCH /auth/v1/credentials/{self.credential_id or '<id>'}",
                        status=response.status)
                if response.status >= 400:
                    raise RedfishError(f"{method} {url}: {_reason(response.status, text)}", status=response.status,
                                       retryable=response.status in (429, 500, 502, 503, 504),
                                       may_have_acted=response.status in (500, 502, 504))
                if not text.strip():
                    return {}
                try:
                    return await response.json(content_type=None)
                except ValueError:
                    raise RedfishError(f"{method} {url}: the answer is not JSON") from None
        except aiohttp.ClientSSLError as exc:
            raise RedfishError(f"{url}: TLS verification failed ({exc.__class__.__name__}); install the BMC's CA or "
                               "mark the target insecure explicitly") from None
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # No connection, so the request never left.
            reason = getattr(exc, "os_error", None) or exc
            raise RedfishError(f"{url}: cannot connect ({reason})", retryable=True) from None
        except TimeoutError:
            raise RedfishError(f"{url}: no answer within {self.timeout.total:g} s", retryable=True,
                               may_have_acted=True) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise RedfishError(f"{url}: the answer was cut off or malformed ({exc})", retryable=True,
                               may_have_acted=True) from None
        except asyncio.CancelledError:
            raise

    async def members(self, path: str) -> list[str]:
        """The @odata.id of each member of a collection."""
        collection = await self.get(path)
        return [m["@odata.id"] for m in collection.get("Members", []) if isinstance(m, dict) and "@odata.id" in m]
