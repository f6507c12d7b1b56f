"""Boot profiles at scale: full reload with and without templates, index memory, and how fast a profile
edit reaches the live index through the change feed.

    python -m bench.profiles --nodes 10000 [--rounds 3] [--rss scopes,arches] [--no-propagation]

Starts its own throwaway PostgreSQL, seeds bench.fleet's cluster (role boot parameters and payloads),
labels every node with its rack, and prints one JSON line per figure.  Configurations: `scopes` (no
profile: today's resolution), `plain` (one profile for every node, plain text), `templates` (the same
profile with a templated cmdline, user-data and vendor-data), `arches` (per-architecture kernels for
x86_64 and arm64), `script` (the templated profile with its own iPXE script template too), and, for
memory only, `everything` (`script` with every script signed: what a site with all of #21 on holds).
`--rss-only CONFIG` builds one configuration in this fresh process and reports the bytes per node the index
adds (run once per configuration: RSS is only clean in a new process).

Propagation: edits 50 ms apart (an admin's, not a stream), each timed from the UPDATE to its answer in the
live index, alternated round by round: first without profiles (one node's boot parameters; the role's, which
re-renders every node), then with the templated all-nodes profile, a 40-node one (one rack) and a one-node one (by component id) beside
the one-node boot-parameter edit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time

import psutil

from bench import fleet
from bench.indexscale import sign, throwaway_signer
from core import db, migrate, profiles
from core.embedded import EmbeddedPostgres, pgserver_bin_dir, system_bin_dir
from core.signing import ScriptSigner
from hotpath import loader
from hotpath.answers import AnswerBuilder
from hotpath.feed import ChangeFeed
from hotpath.index import Index
from tests.helpers.paths import tmp_root
from tests.helpers.ports import free_port

BASE_URL = "http://boot.cluster:27778"
CMDLINE = "console=ttyS0,115200 root=live:http://images.cluster/compute/rootfs.squashfs rd.neednet=1 ip=dhcp quiet"
CONFIGS = {
    "scopes": None,
    "plain": {"kernel": "http://images.cluster/p/vmlinuz", "initrd": "http://images.cluster/p/initrd",
              "cmdline": CMDLINE + " nid={{nid}}", "user_data": "#cloud-config\npackages: [htop]\n",
              "vendor_data": "#cloud-config\nntp: {enabled: true}\n"},
    "templates": {"kernel": "http://images.cluster/p/vmlinuz", "initrd": "http://images.cluster/p/initrd",
                  "cmdline": CMDLINE + " nid={{ nid }} rack={{ labels.rack }}{% if 'Compute' == role %} slurm{% endif %}",
                  "user_data": "#cloud-config\nhostname: {{ hostname }}\nwrite_files:\n  - path: /etc/rack\n"
                               "    content: {{ labels.rack }}\n",
                  "vendor_data": "#cloud-config\n# {{ id }} in {{ location.rack }}\n"},
    "arches": {"kernel": "", "initrd": "", "cmdline": CMDLINE, "arches": {
        "x86_64": {"kernel": "http://images.cluster/x86/vmlinuz", "initrd": "http://images.cluster/x86/initrd"},
        "arm64": {"kernel": "http://images.cluster/arm/Image", "initrd": "http://images.cluster/arm/initrd"}}},
}
SCRIPT = ("#!ipxe\necho Booting {{ id }} ({{ profile }}, rack {{ labels.rack }}) from {{ baseUrl }}\n"
          "kernel {{ kernel }} {{ params }} || goto retry\n{% if initrd %}initrd {{ initrd }} || goto retry\n"
          "{% endif %}boot || goto retry\n")
CONFIGS["script"] = {**CONFIGS["templates"], "script": SCRIPT}
SIGNED = {"everything": "script"}  # memory-only configurations: the profile of another, every script signed


async def set_profile(conn, profile_id: str, selector: dict, fields: dict) -> None:
    await conn.execute("DELETE FROM bss.profiles WHERE id = $1", profile_id)
    columns = {"id": profile_id, "selector": selector, "specificity": profiles.specificity(selector), **fields}
    await conn.execute(f"INSERT INTO bss.profiles ({', '.join(columns)}) VALUES "
                       f"({', '.join(f'${i + 1}' for i in range(len(columns)))})", *columns.values())


async def configure(conn, config: str) -> None:
    await conn.execute("DELETE FROM bss.profiles")
    if CONFIGS[config] is not None:
        await set_profile(conn, "all", {"type": "Node"}, CONFIGS[config])


async def full_reload(conn, signer: ScriptSigner | None = None) -> tuple[Index, float]:
    index = Index()
    batch = AnswerBuilder(BASE_URL, 2.0, 60.0, signer).batch()
    gc.disable()
    started = time.perf_counter()
    await loader.load(conn, lambda rows, params, payloads: index.add(batch(rows, params, payloads)),
                      profiles=batch.use_profiles)
    await sign(batch, signer)
    elapsed = time.perf_counter() - started
    gc.enable()
    return index, elapsed


# (name, table, row id, a node whose kernel the edit changes)
ONE_NODE = ("node_boot_params_1_node", "bss.boot_params", "node-5-params", "node-5")
EDITS_WITHOUT_PROFILES = (ONE_NODE, ("role_boot_params_all_nodes", "bss.boot_params", "compute", "node-1"))
EDITS_WITH_PROFILES = (ONE_NODE, ("one_node_profile", "bss.profiles", "node-77", "node-77"),
                       ("one_rack_40_nodes", "bss.profiles", "rack-r7", "node-280"),
                       ("all_nodes", "bss.profiles", "all", "node-1"))
# Between two edits: an admin's edits are not a stream (the feed gathers a stream into batches, FEED_COALESCE_MS).
PAUSE_S = 0.05


async def propagation(dsn: str, conn, edits: tuple, rounds: int = 10) -> dict:
    """Edit to the new answer seen in the live index, for each edit, alternated round by round; the one-node
    boot-parameter edit (what bench.bootstorm's propagation figure edits) is the reference in each set."""
    holder = {"index": Index()}
    feed = ChangeFeed(dsn, AnswerBuilder(BASE_URL, 2.0, 60.0), lambda index: holder.update(index=index),
                      lambda: holder["index"], check_interval_s=3600)
    feed.start()
    await asyncio.wait_for(feed.ready.wait(), 120)
    figures: dict = {}
    try:
        await conn.execute("INSERT INTO bss.boot_params (id, component_id, kernel) VALUES ('node-5-params', 'node-5', "
                           "'http://images.cluster/node-5/vmlinuz') ON CONFLICT (id) DO UPDATE SET kernel = excluded.kernel")
        while holder["index"].by_id["node-5"].kernel != "http://images.cluster/node-5/vmlinuz":
            await asyncio.sleep(0.001)
        seen: dict[str, list[float]] = {name: [] for name, *_ in edits}
        for i in range(rounds):
            for name, table, row_id, probe in edits:
                await asyncio.sleep(PAUSE_S)
                kernel = f"http://images.cluster/{row_id}/{i}/vmlinuz"
                started = time.perf_counter()
                await conn.execute(f"UPDATE {table} SET kernel = $1 WHERE id = $2", kernel, row_id)
                while holder["index"].by_id[probe].kernel != kernel:
                    await asyncio.sleep(0.0005)
                seen[name].append(round((time.perf_counter() - started) * 1000, 1))
        figures = {name: {"ms": sorted(ms), "median_ms": statistics.median(ms)} for name, ms in seen.items()}
        figures["full_reloads"] = feed.full_reloads
    finally:
        await feed.stop()
    return figures


async def rss_only(dsn: str, config: str) -> dict:
    conn = await db.connect(dsn)
    await configure(conn, SIGNED.get(config, config))
    signer = throwaway_signer() if config in SIGNED else None
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    index, elapsed = await full_reload(conn, signer)
    gc.collect()
    after = process.memory_info().rss
    await conn.close()
    return {"config": config, "nodes": len(index), "reload_s": round(elapsed, 3),
            "index_bytes_per_node": round((after - before) / max(1, len(index)))}


async def main_async(args) -> None:
    if args.rss_only:
        print(json.dumps(await rss_only(args.dsn, args.rss_only)))
        return
    # The service user must traverse the data directory's parents: tmp_root() is made for that.
    cluster = EmbeddedPostgres(tmp_root() / f"bench-profiles-{os.getpid()}", port=free_port(),
                               bin_dir=pgserver_bin_dir() or system_bin_dir(), durable=False)
    cluster.start()
    try:
        dsn = cluster.dsn
        conn = await db.connect(dsn)
        await migrate.migrate(conn)
        await fleet.seed(conn, args.nodes)
        await conn.execute("UPDATE smd.components SET labels = jsonb_build_object('rack', rack)")
        await conn.execute("ANALYZE")
        # The configurations alternate round by round: on a shared machine, load drifts between rounds.
        times: dict[str, list[float]] = {config: [] for config in CONFIGS}
        for _ in range(args.rounds):
            for config in CONFIGS:
                await configure(conn, config)
                times[config].append(round((await full_reload(conn))[1], 3))
        print(json.dumps({"nodes": args.nodes, "full_reload_s": {c: sorted(t) for c, t in times.items()}}),
              flush=True)
        for config in args.rss:
            out = subprocess.run([sys.executable, "-m", "bench.profiles", "--dsn", dsn, "--rss-only", config],
                                 capture_output=True, text=True, check=True)
            print(out.stdout.strip(), flush=True)
        if not args.no_propagation:
            # Today's edits first (no profile): one node's boot parameters, and the role's, which every node has.
            await configure(conn, "scopes")
            print(json.dumps({"nodes": args.nodes, "propagation_without_profiles": await propagation(
                dsn, conn, EDITS_WITHOUT_PROFILES)}), flush=True)
            await configure(conn, "templates")
            await set_profile(conn, "rack-r7", {"type": "Node", "labels": {"rack": "R7"}}, CONFIGS["plain"])
            await set_profile(conn, "node-77", {"componentId": "node-77"}, CONFIGS["plain"])
            print(json.dumps({"nodes": args.nodes, "propagation": await propagation(dsn, conn, EDITS_WITH_PROFILES)}),
                  flush=True)
        await conn.close()
    finally:
        cluster.destroy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn")
    parser.add_argument("--rss-only", choices=sorted([*CONFIGS, *SIGNED]))
    parser.add_argument("--rss", type=lambda text: text.split(","), default=[*CONFIGS, *SIGNED],
                        help="the configurations whose index memory to measure (comma-separated)")
    parser.add_argument("--no-propagation", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
