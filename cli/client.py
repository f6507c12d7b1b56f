"""The CLI's side of the admin API: where it is, which token to send, and errors that say what to do.

Where and who, first match wins:
  endpoint  --endpoint, CHAMICORE_ENDPOINT, `endpoint` in the config file, CHAMICORE_ADMIN_LISTEN
  token     CHAMICORE_TOKEN, `token` in the config file, a token fetched with the config file's
            client_id/client_secret, or with the credentials `chamicore up` wrote in its data dir
The config file is $XDG_CONFIG_HOME/chamicore/config.yaml (~/.config/...); fetched tokens are cached
until shortly before they expire in $XDG_CACHE_HOME/chamicore/token.json, mode 0600.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from cli.errors import (
    EXIT_AUTH,
    EXIT_CONFIG,
    EXIT_CONFLICT,
    EXIT_NOT_FOUND,
    EXIT_SERVER,
    EXIT_USAGE,
    CLIError,
)
from core.config import Config
from core.files import write_private

SERVICE = "admin API"
TIMEOUT_S = 60


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "chamicore" / "config.yaml"


def _token_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "chamicore" / "token.json"


def read_config_file() -> dict:
    path = config_path()
    if not path.exists():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CLIError("cli", f"cannot read {path}: {exc}", "fix or remove the file", EXIT_CONFIG) from None
    if not isinstance(loaded, dict):
        raise CLIError("cli", f"{path} is not a mapping of settings", "see `chamicore auth login --help`", EXIT_CONFIG)
    return loaded


def write_config_file(values: dict) -> Path:
    path = config_path()
    write_private(path, yaml.safe_dump(values, sort_keys=True))
    return path


@dataclasses.dataclass
class Problem:
    status: int
    title: str
    detail: str
    errors: list[dict]


HINTS = {
    400: "check the options and filters (`--help` lists them)",
    401: "log in with `chamicore auth login`, or set CHAMICORE_TOKEN to a valid token",
    403: "your token lacks that scope: ask an admin for a role that grants it",
    404: "check the id; the matching `list` command shows what exists",
    409: "it already exists or something depends on it; read it again and retry",
    412: "it changed since you read it: get it again, then retry",
    413: "the body is too large: split it",
    415: "send JSON",
    422: "fix the fields named above",
    428: "the change needs the current version: get it first",
}


def exit_code(status: int) -> int:
    if status in (401, 403):
        return EXIT_AUTH
    if status == 404:
        return EXIT_NOT_FOUND
    if status in (409, 412, 428):
        return EXIT_CONFLICT
    if status >= 500:
        return EXIT_SERVER
    return EXIT_USAGE


class ApiClient:
    def __init__(self, endpoint: str, token: str | None = None, credentials: dict | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._token = token
        self._credentials = credentials  # client_id / client_secret, to fetch (and cache) a token

    # -- making a client from the settings --------------------------------------------------------------

    @classmethod
    def from_settings(cls, config: Config, endpoint: str | None = None) -> ApiClient:
        file = read_config_file()
        endpoint = (endpoint or os.environ.get("CHAMICORE_ENDPOINT") or file.get("endpoint")
                    or config.admin_listen.local_url)
        token = os.environ.get("CHAMICORE_TOKEN") or file.get("token")
        credentials = None
        if not token:
            if file.get("client_id") and file.get("client_secret"):
                credentials = {"client_id": file["client_id"], "client_secret": file["client_secret"]}
            else:
                bootstrap = config.resolved_data_dir / "credentials" / "admin.json"
                if bootstrap.exists():
                    try:
                        credentials = json.loads(bootstrap.read_text())
                    except (OSError, ValueError):
                        credentials = None
        return cls(endpoint, token, credentials)

    # -- tokens ------------------------------------------------------------------------------------------

    def token(self) -> str | None:
        if self._token:
            return self._token
        credentials = self._credentials
        if not credentials:
            return None
        cache_key = f"{self.endpoint}|{credentials.get('client_id')}"
        cached = self._cached_token(cache_key)
        if cached:
            self._token = cached
            return cached
        body = urllib.parse.urlencode({"grant_type": "client_credentials", **{
            k: credentials[k] for k in ("client_id", "client_secret")}}).encode()
        answer = self._send("POST", "/auth/v1/token", body, {"Content-Type": "application/x-www-form-urlencoded"},
                            auth=False)
        self._token = answer["access_token"]
        self._cache_token(cache_key, answer["access_token"], answer.get("expires_in", 300))
        return self._token

    def _cached_token(self, cache_key: str) -> str | None:
        try:
            cached = json.loads(_token_cache().read_text())
        except (OSError, ValueError):
            return None
        entry = cached.get(cache_key) if isinstance(cached, dict) else None
        if isinstance(entry, dict) and entry.get("expires", 0) > time.time() + 60:
            return entry.get("token")
        return None

    def _cache_token(self, cache_key: str, token: str, lifetime: int) -> None:
        path = _token_cache()
        try:
            try:
                cached = json.loads(path.read_text())
            except (OSError, ValueError):
                cached = {}
            if not isinstance(cached, dict):  # a damaged cache is replaced, not a crash
                cached = {}
            cached[cache_key] = {"token": token, "expires": time.time() + lifetime}
            write_private(path, json.dumps(cached))
        except OSError:
            pass  # a cache only

    def forget_token(self) -> None:
        self._token = None

    # -- requests ----------------------------------------------------------------------------------------

    def get(self, path: str, params: dict | None = None) -> Any:
        return self.request("GET", path, params=params)

    def request(self, method: str, path: str, body: Any = None, *, params: dict | None = None,
                headers: dict | None = None, content_type: str = "application/json") -> Any:
        query = {k: v for k, v in (params or {}).items() if v not in (None, "", [])}
        if query:
            path += "?" + urllib.parse.urlencode({k: ",".join(v) if isinstance(v, list) else v
                                                  for k, v in query.items()})
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        all_headers = {"Content-Type": content_type, **(headers or {})} if data is not None else dict(headers or {})
        return self._send(method, path, data, all_headers)

    def request_with_etag(self, path: str) -> tuple[Any, str | None]:
        return self._send("GET", path, None, {}, want_etag=True)

    def _send(self, method: str, path: str, data: bytes | None, headers: dict, *, auth: bool = True,
              want_etag: bool = False) -> Any:
        url = self.endpoint + path
        headers = {"Accept": "application/json", **headers}
        if auth and (token := self.token()):
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                raw = response.read()
                etag = response.headers.get("ETag")
        except urllib.error.HTTPError as exc:
            with exc:
                raise self._problem_error(method, path, exc.code, exc.read()) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CLIError(SERVICE, f"cannot reach {self.endpoint} ({reason})",
                           "is it running? `chamicore up` starts everything; or set CHAMICORE_ENDPOINT / "
                           "`endpoint` in the config file", EXIT_SERVER) from None
        value = json.loads(raw) if raw.strip() else None
        return (value, etag) if want_etag else value

    def _problem_error(self, method: str, path: str, status: int, raw: bytes) -> CLIError:
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        detail = body.get("detail") or body.get("error_description") or raw.decode(errors="replace")[:200]
        lines = [f"{method} {path.split('?')[0]}: {status} {body.get('title', '')}".rstrip() + f": {detail}"]
        for error in body.get("errors") or []:
            if isinstance(error, dict) and error.get("detail") != detail:
                lines.append(f"  {error.get('field', '?')}: {error.get('detail', '')}")
        hint = HINTS.get(status, "see the admin API log" if status >= 500 else None)
        return CLIError(SERVICE, "\n".join(lines), hint, exit_code(status))
