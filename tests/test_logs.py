"""core.logs: JSON lines that a collector parses, one per record; the plain text line unchanged by default."""

from __future__ import annotations

import datetime
import io
import json
import logging
import logging.config
import re

import pytest

from core.config import ConfigError, load_config
from core.logs import REQUEST_ID, TRACE_ID, JsonFormatter, TextFormatter, configure, granian_logging


def record(msg: str = "hello %s", *args: object, exc_info=None, name: str = "chamicore.test",
           level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args or ("world",), exc_info)


def test_a_json_line_carries_every_field():
    request, trace = REQUEST_ID.set("abc-123"), TRACE_ID.set("4bf92f3577b34da6a3ce929d0e0e4736")
    try:
        line = JsonFormatter("admin").format(record())
    finally:
        REQUEST_ID.reset(request)
        TRACE_ID.reset(trace)
    entry = json.loads(line)
    assert entry == {"ts": entry["ts"], "level": "warning", "service": "admin", "logger": "chamicore.test",
                     "msg": "hello world", "request_id": "abc-123", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
    moment = datetime.datetime.fromisoformat(entry["ts"].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.UTC) - moment).total_seconds()) < 60


def test_outside_a_request_the_ids_are_null():
    entry = json.loads(JsonFormatter("sync").format(record(level=logging.INFO)))
    assert entry["request_id"] is None and entry["trace_id"] is None
    assert entry["service"] == "sync" and entry["level"] == "info"


def test_an_exception_and_line_breaks_stay_on_one_line():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        failed = record("line one\nline two\r\n%s", "\u2028end", exc_info=sys.exc_info())
    line = JsonFormatter("boot").format(failed)
    assert "\n" not in line and "\r" not in line and len(line.splitlines()) == 1
    entry = json.loads(line)
    assert entry["msg"] == "line one\nline two\r\n\u2028end"
    assert entry["exc"].startswith("Traceback") and "ValueError: bad\nvalue" in entry["exc"]


def test_the_text_line_is_unchanged_by_default_and_names_the_request_when_there_is_one():
    logged = record()
    plain = TextFormatter().format(logged)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING chamicore.test: hello world", plain)
    token = REQUEST_ID.set("r-1")
    try:
        assert TextFormatter().format(logged) == plain + " [req=r-1]"
    finally:
        REQUEST_ID.reset(token)


def test_the_setting(monkeypatch):
    assert load_config({}).log_format == "text"
    assert load_config({"CHAMICORE_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_config({"CHAMICORE_LOG_FORMAT": "yaml"})


@pytest.mark.parametrize(("log_format", "json_lines"), [("json", True), ("text", False)])
def test_configure_installs_one_handler_in_the_chosen_format(monkeypatch, log_format, json_lines):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        config = load_config({"CHAMICORE_LOG_FORMAT": log_format, "CHAMICORE_LOG_LEVEL": "debug"})
        configure(config, "admin")
        configure(config, "admin")  # idempotent: still one handler of ours
        assert len(root.handlers) == len(before) + 1
        logging.getLogger("chamicore.test").debug("x" * 100_000)  # clipped: configure bounds the records too
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 4096
    if json_lines:
        assert json.loads(lines[0])["level"] == "debug"
    else:
        assert " DEBUG chamicore.test: xxx" in lines[0]


def test_granian_lines_share_the_format():
    config = load_config({"CHAMICORE_LOG_FORMAT": "json"})
    logged = io.StringIO()
    settings = granian_logging(config, "boot")
    # What dictConfig (in granian's main process and each worker) makes of it, without touching global logging.
    formatter = logging.config.DictConfigurator({}).configure_formatter(dict(settings["formatters"]["chamicore"]))
    handler = logging.StreamHandler(logged)
    handler.setFormatter(formatter)
    handler.emit(record("Starting granian (main PID: %s)", 42, name="_granian", level=logging.INFO))
    assert json.loads(logged.getvalue())["service"] == "boot"
    assert settings["handlers"]["console"]["stream"] == "ext://sys.stderr"


def test_the_admin_server_logs_json_lines_with_the_request_id(admin_server):
    """`chamicore serve admin` with CHAMICORE_LOG_FORMAT=json: every line it writes is one JSON record, granian's
    own lines included, and a line logged while handling a request names that request."""
    import os

    import httpx

    server = admin_server(CHAMICORE_LOG_FORMAT="json", CHAMICORE_LOG_LEVEL="info",
                          CHAMICORE_TRUSTED_PROXIES="127.0.0.1/32", CHAMICORE_TOKEN_FAILURES_PER_CLIENT="1")
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = httpx.post(server.url + "/auth/v1/token", headers={"X-Request-ID": "proc-1", "traceparent": traceparent},
                          data={"grant_type": "client_credentials", "client_id": "robot", "client_secret": "wrong"})
    assert response.status_code == 401 and response.headers["x-request-id"] == "proc-1"
    os.killpg(server.process.pid, 15)
    server.process.wait(timeout=15)
    lines = server.process.stderr.read().decode().splitlines()
    entries = [json.loads(line) for line in lines]  # every line: one JSON object
    assert all(e["service"] == "admin" and e["ts"].endswith("Z") for e in entries)
    assert any(e["logger"] == "_granian" and "Starting granian" in e["msg"] for e in entries), entries
    held = [e for e in entries if "token requests held" in e["msg"]]
    assert len(held) == 1, entries
    assert held[0]["level"] == "warning" and held[0]["logger"] == "chamicore.admin.auth"
    assert held[0]["request_id"] == "proc-1" and held[0]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert all(e["request_id"] is None for e in entries if e["logger"] == "_granian")


def test_the_boot_path_logs_json_lines_as_boot(boot_server):
    import os

    server = boot_server(CHAMICORE_LOG_FORMAT="json", CHAMICORE_LOG_LEVEL="info")
    os.killpg(server.process.pid, 15)
    server.process.wait(timeout=15)
    entries = [json.loads(line) for line in server.process.stderr.read().decode().splitlines()]
    assert entries and all(e["service"] == "boot" and e["request_id"] is None for e in entries)
    assert any(e["logger"] == "_granian" for e in entries) and any(e["logger"].startswith("chamicore") for e in entries)


def test_the_sync_daemons_log_json_lines_as_sync(dsn):
    import os
    import subprocess
    import sys

    from tests.helpers.keys import CREDENTIALS_KEY
    from tests.helpers.paths import ROOT

    env = dict(os.environ, CHAMICORE_DATABASE_URL=dsn, CHAMICORE_LOG_FORMAT="json", CHAMICORE_LOG_LEVEL="info",
               CHAMICORE_CREDENTIALS_KEY=CREDENTIALS_KEY, CHAMICORE_POWER_POLL_S="3600")
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "sync"], cwd=ROOT, env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        first = json.loads(process.stderr.readline())  # blocks until the daemons say they run
        assert first["msg"].startswith("sync: running") and first["service"] == "sync"
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    rest = [json.loads(line) for line in process.stderr.read().decode().splitlines()]
    process.stderr.close()
    assert any(e["msg"] == "sync: stopped" for e in rest) and all(e["service"] == "sync" for e in rest)


def test_with_tracing_on_a_json_line_names_the_current_span(admin_server):
    """CHAMICORE_OTEL_ENDPOINT set: a line logged while a request is handled carries the trace id and the span id
    of that request's span, as exported (an OTLP receiver in the test), in the trace the client's traceparent began."""
    import os

    import httpx

    from tests.helpers.otlp import OtlpReceiver
    from tests.helpers.polling import wait_until

    receiver = OtlpReceiver().start()
    try:
        server = admin_server(CHAMICORE_LOG_FORMAT="json", CHAMICORE_LOG_LEVEL="info",
                              CHAMICORE_TOKEN_FAILURES_PER_CLIENT="1", CHAMICORE_OTEL_ENDPOINT=receiver.url,
                              OTEL_BSP_SCHEDULE_DELAY="50")
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        response = httpx.post(server.url + "/auth/v1/token", headers={"traceparent": traceparent},
                              data={"grant_type": "client_credentials", "client_id": "robot", "client_secret": "no"})
        assert response.status_code == 401
        span = wait_until(lambda: receiver.named("POST /auth/v1/token", "chamicore-admin"), 10)[0]
        os.killpg(server.process.pid, 15)
        server.process.wait(timeout=15)
        entries = [json.loads(line) for line in server.process.stderr.read().decode().splitlines()]
    finally:
        receiver.stop()
    held = [e for e in entries if "token requests held" in e["msg"]]
    assert len(held) == 1, entries
    assert span.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and span.parent_id == "00f067aa0ba902b7"
    assert held[0]["trace_id"] == span.trace_id and held[0]["span_id"] == span.span_id
    assert all("span_id" not in e for e in entries if e["logger"] == "_granian")
