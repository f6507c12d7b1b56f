"""Configuration from CHAMICORE_* environment variables.

Every setting has a documented default and is checked once, at start-up;
a bad value raises ConfigError naming the variable, so an operator reads
"CHAMICORE_BOOT_LISTEN: expected host:port" instead of a traceback later.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PREFIX = "CHAMICORE_"


class ConfigError(ValueError):
    """A CHAMICORE_* setting has a value that cannot be used."""

    def __init__(self, name: str, detail: str) -> None:
        self.name = PREFIX + name
        self.detail = detail
        super().__init__(f"{self.name}: {detail}")


@dataclasses.dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_wildcard(self) -> bool:
        """Listening on every address: which one a client should use cannot be told from here."""
        return self.host in ("0.0.0.0", "::", "")

    @property
    def local_url(self) -> str:
        """The URL at which a client on this machine reaches the listener (a wildcard covers loopback)."""
        return self.local("http")

    def local(self, scheme: str) -> str:
        host = "127.0.0.1" if self.is_wildcard else self.host
        return f"{scheme}://[{host}]:{self.port}" if ":" in host else f"{scheme}://{host}:{self.port}"


def _listen(value: str) -> Address:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected host:port, for example 127.0.0.1:27778")
    return Address(host.strip("[]"), int(port))


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError("expected a positive number of seconds")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("expected a positive whole number")
    return number


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not (parts.netloc or parts.query):
            raise ValueError(f"expected a {' or '.join(schemes)} URL")
        return value.rstrip("/")

    return parse


def _nats_servers(value: str) -> str:
    """One NATS URL, or a comma-separated list of a cluster's servers (the client fails over between them)."""
    servers = [item.strip() for item in value.split(",")]
    if len(value) > 4096 or not all(servers):
        raise ValueError("expected a nats or tls URL, or a comma-separated list of them")
    return ",".join(_url("nats", "tls")(server) for server in servers)


def nats_servers(value: str) -> list[str]:
    """The servers of a CHAMICORE_NATS_URL as load_config left it."""
    return value.split(",")


def _replicas(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 5:
        raise ValueError("expected 1 to 5 (JetStream keeps at most 5 replicas of a stream)")
    return number


def _networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in value.split(",") if item.strip())


def in_networks(address: str, networks: tuple) -> bool:
    """Whether `address` (an IP, as a peer or a forwarded hop gives it) is in one of `networks`
    (CHAMICORE_TRUSTED_PROXIES); False for anything that is not an IP address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _issuers(value: str) -> tuple:
    if not value.strip():
        return ()
    try:
        items = json.loads(value)
    except ValueError:
        raise ValueError("expected a JSON list of {issuer, jwksUri, audience}") from None
    if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("issuer"), str) and isinstance(i.get("jwksUri"), str)
            for i in items):
        raise ValueError("expected a JSON list of {issuer, jwksUri, audience}")
    return tuple((i["issuer"], i["jwksUri"], i.get("audience") or "chamicore") for i in items)


def _default_data_dir() -> str:
    # root's home is closed to the PostgreSQL service user, so root keeps its data where services do.
    if os.geteuid() == 0 and not os.environ.get("XDG_DATA_HOME"):
        return "/var/lib/chamicore"
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "chamicore")


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: str | None
    parse: Callable[[str], Any]
    doc: str
    secret: bool = False


# The names are a contract with operators, the Helm chart and outside tests.
SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", None, _url("postgresql", "postgres"),
            "PostgreSQL URL; unset: `chamicore up` starts an embedded PostgreSQL", secret=True),
    Setting("DATA_DIR", None, str, "where `chamicore up` keeps everything it creates (default ~/.local/share/chamicore, or /var/lib/chamicore as root)"),
    Setting("BOOT_LISTEN", "127.0.0.1:27778", _listen, "host:port of the boot path"),
    Setting("ADMIN_LISTEN", "127.0.0.1:27779", _listen, "host:port of the admin API"),
    Setting("BOOT_URL", None, _url("http", "https"),
            "URL at which booting nodes reach the boot path; unset: derived from the request's Host"),
    Setting("BOOT_TLS_LISTEN", None, _listen,
            "host:port of the boot path's HTTPS listener, beside the HTTP one (needs CHAMICORE_BOOT_TLS_CERT and "
            "CHAMICORE_BOOT_TLS_KEY); unset: HTTP only"),
    Setting("BOOT_TLS_CERT", None, str, "PEM file: the HTTPS listener's certificate, then any intermediates"),
    Setting("BOOT_TLS_KEY", None, str, "PEM file: the HTTPS listener's private key (unencrypted; keep it 0600)"),
    Setting("BOOT_TLS_URL", None, _url("https"),
            "URL at which booting nodes reach the HTTPS listener, used in the chain and seed URLs it serves; unset: "
            "derived from the request's Host"),
    Setting("IPXE_DIR", "/usr/lib/ipxe", str,
            "directory whose iPXE EFI programs (*.efi) the boot path serves at /boot/v1/ipxe/<name>, read at start"),
    Setting("EFI_URL", None, _url("http", "https"),
            "base URL of the EFI programs UEFI HTTP boot clients load (Kea's HTTPClient classes): <URL>/ipxe.efi "
            "for x86-64, <URL>/ipxe-arm64.efi for arm64; unset: <boot URL>/boot/v1/ipxe"),
    Setting("BOOT_SIGNING_KEY", None, str,
            "PEM file: the RSA code-signing key that signs boot scripts for iPXE's imgverify (unencrypted; keep it "
            "0600); unset: scripts are not signed"),
    Setting("BOOT_SIGNING_CERT", None, str,
            "PEM file: the certificate of CHAMICORE_BOOT_SIGNING_KEY (extended key usage codeSigning)"),
    Setting("BOOT_SIGNING_CHAIN", None, str,
            "PEM file: intermediate certificates between the signing certificate and the CA built into iPXE, sent "
            "in every signature; unset: none"),
    Setting("BOOT_WORKERS", "1", _positive_int, "boot path worker processes (each holds the whole index)"),
    Setting("ADMIN_WORKERS", "1", _positive_int, "admin API worker processes"),
    Setting("BOOT_INTERFACE", "rsgi", str, "granian interface of the boot path: rsgi (faster) or asgi"),
    Setting("BOOT_MAX_CONNECTIONS", "16384", _positive_int,
            "connections one boot worker serves at once (granian backpressure and backlog)"),
    Setting("METRICS", "true", _bool,
            "the boot path counts its requests for /metrics (false: not counted, and its /metrics answers 404)"),
    Setting("TRUSTED_PROXIES", "", _networks,
            "comma-separated CIDRs whose X-Forwarded-For is believed on the cloud-init path, and whose X-Request-ID "
            "the admin API keeps"),
    Setting("UNKNOWN_RETRY_S", "10", _positive_float, "seconds an unknown or unready node waits before asking again"),
    Setting("RETRY_BASE_S", "2", _positive_float, "first wait after a failed kernel/initrd download"),
    Setting("RETRY_MAX_S", "60", _positive_float, "longest wait between boot retries"),
    Setting("FEED_COALESCE_MS", "5", float, "least time between two batches of changes the boot path applies (an edit "
            "after a quiet spell is applied at once; a burst is gathered meanwhile)"),
    Setting("FEED_CHECK_S", "30", _positive_float, "period of the boot path's cheap consistency check"),
    Setting("TELEMETRY_FLUSH_S", "2", _positive_float, "how often boot telemetry is written to the database"),
    Setting("TELEMETRY_NODE_INTERVAL_S", "30", float,
            "least time between two telemetry writes for one node (0: every flush); a node's first request is "
            "always written at the next flush"),
    Setting("BOOT_STAGES", "true", _bool,
            "the boot path records how far each node's boot went (ipxe, script, kernel-booted, cloud-init, ready), "
            "written with its telemetry"),
    Setting("BOOT_STAGES_FLUSH_S", "10", _positive_float,
            "how often boot stages are written to the database; a node's stages in between are one row (a storm "
            "costs PostgreSQL fewer writes; `chamicore stages` lags by up to this long)"),
    Setting("PHONE_HOME", "false", _bool,
            "add cloud-init's phone_home module to every node's user-data, so a booted node reports itself ready "
            "(needs CHAMICORE_BOOT_URL; turning it on changes every node's instance-id)"),
    Setting("NATS_URL", None, _nats_servers,
            "NATS JetStream URL for the event relay, or a comma-separated list of a NATS cluster's servers; "
            "unset: no relay"),
    Setting("NATS_STREAM_REPLICAS", "1", _replicas,
            "replicas of the CHAMICORE stream when the relay creates it (3 on a three-node NATS cluster: a node "
            "lost loses no event); an existing stream keeps its own"),
    Setting("OUTBOX_RETENTION_S", "604800", _positive_int, "how long relayed events stay in events.outbox"),
    Setting("KEA_URL", None, _url("http", "https"), "Kea control agent URL; unset: no Kea sync"),
    Setting("DISCOVERY_CONCURRENCY", "64", _positive_int, "hosts a discovery scan talks to at once, across all scans"),
    Setting("DISCOVERY_TIMEOUT_S", "15", _positive_float, "longest a discovery scan waits for one host"),
    Setting("POWER_CONCURRENCY", "256", _positive_int, "power requests in flight at once, across all BMCs"),
    Setting("POWER_BMC_CONCURRENCY", "4", _positive_int, "power requests in flight at once to one BMC"),
    Setting("POWER_TIMEOUT_S", "10", _positive_float, "longest one request to a BMC may take"),
    Setting("POWER_VERIFY_S", "120", _positive_float,
            "how long a node may take to reach the wanted power state before its task fails"),
    Setting("POWER_MAX_ATTEMPTS", "5", _positive_int, "tries of a power request that fails for a retryable reason"),
    Setting("POWER_BULK_LIMIT", "10000", _positive_int, "most nodes one power transition may name"),
    Setting("POWER_POLL_S", "60", _positive_float, "period of the power-status refresh of every mapped node"),
    Setting("DEV_MODE", "false", _bool, "turns admin API auth checks off (never in production)"),
    Setting("SECRET_KEY", None, str, "key that encrypts the token signing keys", secret=True),
    Setting("SECRET_KEY_FILE", None, str, "file holding CHAMICORE_SECRET_KEY (`chamicore up` creates one)"),
    Setting("CREDENTIALS_KEY", None, str, "key that encrypts BMC credentials", secret=True),
    Setting("CREDENTIALS_KEY_FILE", None, str, "file holding CHAMICORE_CREDENTIALS_KEY (`chamicore up` creates one)"),
    Setting("TOKEN_LIFETIME_S", "3600", _positive_int, "lifetime of issued access tokens, in seconds"),
    Setting("ISSUER", None, _url("http", "https"),
            "issuer (iss) of Chamicore tokens, the same for every admin replica; unset: http://<CHAMICORE_ADMIN_LISTEN>"),
    Setting("TRUSTED_ISSUERS", "", _issuers,
            "outside identity providers for token exchange: JSON list of {issuer, jwksUri, audience}"),
    Setting("TOKEN_FAILURES_PER_CLIENT", "10", _positive_int,
            "failed token requests for one client_id within CHAMICORE_TOKEN_FAILURE_WINDOW_S before it is answered "
            "429 (counted in memory, per admin process)"),
    Setting("TOKEN_FAILURES_PER_ADDRESS", "30", _positive_int,
            "failed token requests from one source address within CHAMICORE_TOKEN_FAILURE_WINDOW_S before it is "
            "answered 429 (counted in memory, per admin process)"),
    Setting("TOKEN_FAILURE_WINDOW_S", "60", _positive_float,
            "the sliding window, in seconds, over which failed token requests are counted"),
    Setting("OPENCHAMI_PUBLIC_READS", "false", _bool,
            "answer the GETs that coresmd and ochami send without a token (SMD's component and interface lists, "
            "read-only, only the fields those clients read); off: they need a token like every other read"),
    Setting("MCP_MODE", "read-only", str,
            "tools the MCP server offers: read-only, or read-write (which also needs CHAMICORE_MCP_ENABLE_WRITE)"),
    Setting("MCP_ENABLE_WRITE", "false", _bool, "the second key to MCP write tools, with CHAMICORE_MCP_MODE=read-write"),
    Setting("CONSOLE_IDLE_S", "1800", _positive_int, "a web console session ends after this many seconds unused"),
    Setting("CONSOLE_SESSION_S", "43200", _positive_int,
            "a web console session ends this many seconds after its login, used or not"),
    Setting("LOG_LEVEL", "info", str, "debug, info, warning or error"),
    Setting("LOG_FORMAT", "text", str,
            "text (plain lines, for a terminal) or json (one JSON object a line, with the request id, for a log "
            "collector)"),
    Setting("OTEL_ENDPOINT", None, _url("http", "https"),
            "OTLP/HTTP base URL of a trace collector (spans go to <URL>/v1/traces); unset: no tracing, at no cost"),
)

_CHOICES = {
    "BOOT_INTERFACE": ("rsgi", "asgi"),
    "LOG_LEVEL": ("debug", "info", "warning", "error"),
    "LOG_FORMAT": ("text", "json"),
    "MCP_MODE": ("read-only", "read-write"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    database_url: str | None
    data_dir: str | None
    boot_listen: Address
    admin_listen: Address
    boot_url: str | None
    boot_tls_listen: Address | None
    boot_tls_cert: str | None
    boot_tls_key: str | None
    boot_tls_url: str | None
    ipxe_dir: str
    efi_url: str | None
    boot_signing_key: str | None
    boot_signing_cert: str | None
    boot_signing_chain: str | None
    boot_workers: int
    admin_workers: int
    boot_interface: str
    boot_max_connections: int
    metrics: bool
    trusted_proxies: tuple
    unknown_retry_s: float
    retry_base_s: float
    retry_max_s: float
    feed_coalesce_ms: float
    feed_check_s: float
    telemetry_flush_s: float
    telemetry_node_interval_s: float
    boot_stages: bool
    boot_stages_flush_s: float
    phone_home: bool
    nats_url: str | None
    nats_stream_replicas: int
    outbox_retention_s: int
    kea_url: str | None
    discovery_concurrency: int
    discovery_timeout_s: float
    power_concurrency: int
    power_bmc_concurrency: int
    power_timeout_s: float
    power_verify_s: float
    power_max_attempts: int
    power_bulk_limit: int
    power_poll_s: float
    dev_mode: bool
    secret_key: str | None
    secret_key_file: str | None
    credentials_key: str | None
    credentials_key_file: str | None
    token_lifetime_s: int
    issuer: str | None
    trusted_issuers: tuple
    token_failures_per_client: int
    token_failures_per_address: int
    token_failure_window_s: float
    openchami_public_reads: bool
    mcp_mode: str
    mcp_enable_write: bool
    console_idle_s: int
    console_session_s: int
    log_level: str
    log_format: str
    otel_endpoint: str | None

    @property
    def token_issuer(self) -> str:
        return self.issuer or self.admin_listen.local_url

    @property
    def node_boot_url(self) -> str | None:
        """The boot path's URL as nodes reach it: CHAMICORE_BOOT_URL, else the listen address
        when it is one address.  None on a wildcard listener: 0.0.0.0 is no address to hand a node."""
        if self.boot_url:
            return self.boot_url
        return None if self.boot_listen.is_wildcard else self.boot_listen.local_url

    @property
    def node_boot_tls_url(self) -> str | None:
        """node_boot_url for the HTTPS listener: CHAMICORE_BOOT_TLS_URL, else its one listen address."""
        if self.boot_tls_url or self.boot_tls_listen is None:
            return self.boot_tls_url
        return None if self.boot_tls_listen.is_wildcard else self.boot_tls_listen.local("https")

    @property
    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir or _default_data_dir()).expanduser().resolve()

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Read and check every CHAMICORE_* setting; raise ConfigError on the first bad one."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(PREFIX + setting.name)
        if raw is None or (raw == "" and setting.default is None):
            raw = setting.default
        if raw is None:
            values[setting.name.lower()] = None
            continue
        choices = _CHOICES.get(setting.name)
        if choices and raw.lower() not in choices:
            raise ConfigError(setting.name, f"expected one of {', '.join(choices)}, got {raw!r}")
        try:
            values[setting.name.lower()] = setting.parse(raw.lower() if choices else raw)
        except ValueError as exc:
            raise ConfigError(setting.name, f"{exc} (got {raw!r})") from None
    config = Config(**values)
    if config.retry_base_s > config.retry_max_s:
        raise ConfigError("RETRY_BASE_S", "must not exceed CHAMICORE_RETRY_MAX_S")
    if not 0 <= config.telemetry_node_interval_s <= 86400:
        raise ConfigError("TELEMETRY_NODE_INTERVAL_S", "expected 0 to 86400 seconds")
    if config.phone_home and not config.boot_url:
        raise ConfigError("PHONE_HOME", "needs CHAMICORE_BOOT_URL: the user-data of every node carries the URL")
    if not 0 <= config.feed_coalesce_ms <= 1000:
        raise ConfigError("FEED_COALESCE_MS", "expected 0 to 1000 milliseconds")
    if config.boot_tls_listen is not None and not (config.boot_tls_cert and config.boot_tls_key):
        raise ConfigError("BOOT_TLS_LISTEN", "needs CHAMICORE_BOOT_TLS_CERT and CHAMICORE_BOOT_TLS_KEY")
    if bool(config.boot_signing_key) != bool(config.boot_signing_cert):
        raise ConfigError("BOOT_SIGNING_KEY", "CHAMICORE_BOOT_SIGNING_KEY and CHAMICORE_BOOT_SIGNING_CERT go together")
    if config.boot_signing_chain and not config.boot_signing_key:
        raise ConfigError("BOOT_SIGNING_CHAIN", "needs CHAMICORE_BOOT_SIGNING_KEY and CHAMICORE_BOOT_SIGNING_CERT")
    return config


def mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":****@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def describe(config: Config) -> list[tuple[str, str, str]]:
    """(variable, effective value with secrets masked, doc) for `chamicore config`."""
    rows = []
    for setting in SETTINGS:
        value = getattr(config, setting.name.lower())
        if value is None:
            shown = "(unset)"
        elif setting.name == "DATABASE_URL":
            shown = mask_url(value)
        elif setting.name == "NATS_URL":
            shown = ",".join(mask_url(server) for server in nats_servers(value))
        elif setting.secret:
            shown = "****"
        elif isinstance(value, tuple):
            shown = ",".join(str(v) for v in value) or "(none)"
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        else:
            shown = str(value)
        rows.append((PREFIX + setting.name, shown, setting.doc))
    return rows
