"""Index build time and memory for N nodes, in a fresh process (clean RSS).

    python -m bench.indexscale --dsn URL --nodes 100000

Prints one JSON line: seconds to read the rows, to build and render the
answers, and the resident memory the index adds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time

import psutil

from core import db
from hotpath import loader
from hotpath.answers import AnswerBuilder
from hotpath.index import Index


async def measure(dsn: str, base_url: str | None) -> dict:
    process = psutil.Process()
    conn = await db.connect(dsn)
    gc.collect()
    rss_before = process.memory_info().rss
    # Exactly what the boot path's full reload does (hotpath/feed.py), timed in parts.
    index = Index()
    batch = AnswerBuilder(base_url, 2.0, 60.0).batch()
    building = [0.0]

    def consume(rows, params, payloads):
        started_chunk = time.perf_counter()
        index.add(batch(rows, params, payloads))
        building[0] += time.perf_counter() - started_chunk

    started = time.perf_counter()
    gc.disable()
    await loader.load(conn, consume)
    gc.enable()
    built = time.perf_counter()
    loaded = built - building[0]
    await conn.close()
    gc.collect()
    rss_after = process.memory_info().rss
    return {
        "nodes": len(index),
        "macs": index.mac_count,
        "load_s": round(loaded - started, 3),
        "build_s": round(built - loaded, 3),
        "total_s": round(built - started, 3),
        "index_rss_mb": round((rss_after - rss_before) / 2**20, 1),
        "prerendered": base_url is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--base-url", default="http://boot.cluster:27778")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.dsn, args.base_url or None))))


if __name__ == "__main__":
    main()
