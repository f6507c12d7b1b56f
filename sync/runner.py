"""`chamicore serve sync`: run the daemons the configuration enables, until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from core import sdnotify, tracing
from core.bounded import bound_log_records
from core.config import Config, ConfigError
from core.crypto import device_credentials_box
from sync.discovery.scanner import DiscoveryScanner
from sync.kea import KeaSync
from sync.leases import LeaseSync
from sync.outbox import OutboxRelay
from sync.power.engine import PowerEngine
from sync.service import Job

log = logging.getLogger("chamicore.sync")
STOP_TIMEOUT_S = 10


def enabled_jobs(config: Config) -> list[Job]:
    dsn = config.database_url
    if not dsn:
        raise ConfigError("DATABASE_URL", "the sync daemons need it (chamicore up sets it)")
    box = device_credentials_box(config)
    jobs: list[Job] = [
        DiscoveryScanner(dsn, box, config.discovery_concurrency, config.discovery_timeout_s),
        PowerEngine(dsn, box, concurrency=config.power_concurrency,
                    bmc_concurrency=config.power_bmc_concurrency, timeout_s=config.power_timeout_s,
                    verify_s=config.power_verify_s, max_attempts=config.power_max_attempts,
                    poll_s=config.power_poll_s),
    ]
    if config.nats_url:
        jobs.append(OutboxRelay(dsn, config.nats_url, config.outbox_retention_s, config.nats_stream_replicas))
    if config.kea_url:
        if config.node_boot_url is None:
            raise ConfigError("BOOT_URL", f"the Kea sync hands nodes the boot path's URL, and CHAMICORE_BOOT_LISTEN "
                                          f"({config.boot_listen}) listens on every address: set CHAMICORE_BOOT_URL "
                                          "to the URL nodes reach it at, e.g. http://10.0.0.1:27778")
        jobs.append(KeaSync(dsn, config.kea_url, config.node_boot_url, efi_url=config.efi_url))
        jobs.append(LeaseSync(dsn, config.kea_url))  # leases as the nodes' dhcp boot stage
    return jobs


async def run_jobs(jobs: list[Job]) -> None:
    bound_log_records()  # BMCs and Kea choose some of what the daemons log
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(job.run(), name=f"chamicore-sync-{job.name}",
                                 context=tracing.service_context(f"sync-{job.name}")) for job in jobs]
    log.info("sync: running %s", ", ".join(job.name for job in jobs))
    sdnotify.notify("READY=1\nSTATUS=" + ", ".join(job.name for job in jobs))
    await stop.wait()
    sdnotify.notify("STOPPING=1")
    for task in tasks:
        task.cancel()
    # Bounded: a daemon stuck on the network does not hold up the stop.
    await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
    log.info("sync: stopped")
