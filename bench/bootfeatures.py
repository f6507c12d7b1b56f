"""What the boot features of issue #21 cost a boot storm: today's boot path against one with profiles,
templates, per-architecture answers, signed scripts and boot-stage tracking all on, in one run.

    python -m bench.bootfeatures [--nodes 10000] [--duration 8] [--connections 1000] [--rounds 2] [--control]

Two databases in one private PostgreSQL hold the same N nodes of bench.fleet.  The `on` one adds what a site
using the features would have: every node labelled with its rack, a templated site-wide profile (its own iPXE
script, cmdline, user-data and vendor-data templates) and a per-architecture profile (x86_64 and arm64 kernels)
for one rack in ten.  The `on` boot path signs every script (a throwaway CA's RSA-2048 code-signing certificate) and
records boot stages; the `off` one does neither (CHAMICORE_BOOT_STAGES=false), as the boot path did before
#21.  bench.alternate drives wrk's usual mix at each in turn.  Printed: requests per second and p99 of each
setting and their ratios (the issue's target: within 5%), the spread of runs within a setting, and each
server's resident memory once loaded (the features' added bytes per node).  `--control` runs the `off`
settings on both databases: the drift alone, and what the profiles' data costs without the features;
`--only signing|stages` turns on only one of the two.

Writes bench/results/bootfeatures.json.  No figure is asserted.
"""

from __future__ import annotations

import asyncio
import json
import sys

from bench.alternate import (
    alternate,
    arguments,
    boot_env,
    cpu_figures,
    private_cluster,
    resident_mb,
    seed,
)
from bench.bootstorm import RESULTS, ROOT
from core import db, profiles
from tests.helpers.tls import TestCA

TARGET = 0.95
CMDLINE = "console=ttyS0,115200 root=live:http://images.cluster/compute/rootfs.squashfs rd.neednet=1 ip=dhcp quiet"
SITE_PROFILE = {
    "kernel": "http://images.cluster/p/vmlinuz", "initrd": "http://images.cluster/p/initrd",
    "cmdline": CMDLINE + " nid={{ nid }} rack={{ labels.rack }}{% if role == 'Compute' %} slurm{% endif %}",
    "user_data": "#cloud-config\nhostname: {{ hostname }}\nwrite_files:\n  - path: /etc/rack\n"
                 "    content: {{ labels.rack }}\n",
    "vendor_data": "#cloud-config\n# {{ id }} in {{ location.rack }}\n",
    # Its own iPXE script too, printing per-node values (so every node's script is its own string).
    "script": "#!ipxe\necho Booting {{ id }} ({{ profile }}, rack {{ labels.rack }}) from {{ baseUrl }}\n"
              "kernel {{ kernel }} {{ params }} || goto retry\n{% if initrd %}initrd {{ initrd }} || goto retry\n"
              "{% endif %}boot || goto retry\n",
}
ARCH_PROFILE = {"cmdline": CMDLINE, "arches": {
    "x86_64": {"kernel": "http://images.cluster/x86/vmlinuz", "initrd": "http://images.cluster/x86/initrd"},
    "arm64": {"kernel": "http://images.cluster/arm/Image", "initrd": "http://images.cluster/arm/initrd"}}}


async def add_profile(conn, profile_id: str, selector: dict, fields: dict) -> None:
    columns = {"id": profile_id, "selector": selector, "specificity": profiles.specificity(selector), **fields}
    await conn.execute(f"INSERT INTO bss.profiles ({', '.join(columns)}) VALUES "
                       f"({', '.join(f'${i + 1}' for i in range(len(columns)))})", *columns.values())


async def seed_features(dsn: str) -> int:
    """Labels and profiles over the seeded nodes; the racks given a per-architecture profile."""
    conn = await db.connect(dsn)
    try:
        await conn.execute("UPDATE smd.components SET labels = jsonb_build_object('rack', rack) WHERE type = 'Node'")
        await add_profile(conn, "site", {}, SITE_PROFILE)
        racks = [r["rack"] for r in await conn.fetch(
            "SELECT DISTINCT rack FROM smd.components WHERE type = 'Node' AND rack IS NOT NULL ORDER BY rack")]
        for rack in racks[::10]:
            await add_profile(conn, f"arch-{rack}", {"labels": {"rack": rack}}, ARCH_PROFILE)
        await conn.execute("ANALYZE")
        return len(racks[::10])
    finally:
        await conn.close()


def main() -> None:
    parser = arguments(__doc__, "the features")
    parser.add_argument("--only", choices=("signing", "stages"),
                        help="of signing and stage tracking, only this one on (the profiles' data is always there)")
    args = parser.parse_args()
    with private_cluster("featuresbench") as (cluster, work):
        featured_dsn = cluster.dsn.rsplit("/", 1)[0] + "/featured"

        async def prepare() -> int:
            conn = await db.connect(cluster.dsn)
            await conn.execute("CREATE DATABASE featured")
            await conn.close()
            await seed(cluster.dsn, args.nodes)
            await seed(featured_dsn, args.nodes)
            return await seed_features(featured_dsn)

        arch_profiles = asyncio.run(prepare())
        ca = TestCA(work)
        cert, key = ca.issue_code_signing()
        features = {"CHAMICORE_BOOT_STAGES": "false" if args.only == "signing" else "true"}
        if args.only != "stages":
            features.update(CHAMICORE_BOOT_SIGNING_KEY=str(key), CHAMICORE_BOOT_SIGNING_CERT=str(cert))
        envs = {"off": boot_env(cluster.dsn, CHAMICORE_BOOT_STAGES="false"),
                "on": boot_env(featured_dsn, **({"CHAMICORE_BOOT_STAGES": "false"} if args.control else features))}
        results = alternate("features", envs, nodes=args.nodes, connections=args.connections,
                            duration=args.duration, rounds=args.rounds, work=work, storm=args.storm,
                            during=lambda servers: {"rss_mb": {s: resident_mb(server) for s, server in servers.items()}})
    rss = results["rss_mb"]
    results.update(nodes=args.nodes, duration_s=args.duration, connections=args.connections, control=args.control,
                   only=args.only,
                   arch_profiles=arch_profiles, target=TARGET,
                   added_bytes_per_node=round((rss["on"] - rss["off"]) * 2**20 / args.nodes))
    label = "control (features off on both): " if args.control else ""
    print(f"{label}features on: {results['on_req_per_s']:,} req/s, p99 {results['p99_on_ms']} ms   "
          f"off: {results['off_req_per_s']:,} req/s, p99 {results['p99_off_ms']} ms   ratio {results['ratio']:.3f} "
          f"(target >= {TARGET}), p99 ratio {results['p99_ratio']:.3f}; spread within a setting "
          f"{results['spread_within_setting']}; resident MB {rss} "
          f"({results['added_bytes_per_node']} bytes/node added); {cpu_figures(results)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("bootfeatures-control.json" if args.control else "bootfeatures.json")).write_text(
        json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
