"""Index build time and memory for N nodes, in a fresh process (clean RSS).

    python -m bench.indexscale --dsn URL [--sign]

Prints one JSON line: seconds to read the rows, to build and render the
answers, and the resident memory the index adds.  With --sign, every script
is also signed (a throwaway RSA-2048 code-signing key, core/signing.py) as
the feed does it, in worker threads, one share per CPU (`sign_s`, inside
`total_s`); `resign_s` times a second full reload, signing included, that
takes the first index's signatures for unchanged scripts, as the boot
path's reload after a lost connection does.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
from pathlib import Path

import psutil
from cryptography import x509

from core import db
from core.signing import ScriptSigner, make_signer
from hotpath import loader
from hotpath.answers import AnswerBuilder, sign_entries
from hotpath.index import Index
from tests.helpers.tls import TestCA


def throwaway_signer() -> ScriptSigner:
    """An RSA-2048 code-signing certificate from a throwaway CA, as a site's would be (bench only)."""
    with tempfile.TemporaryDirectory() as directory:
        cert, key = TestCA(Path(directory)).issue_code_signing()
        return make_signer(key.read_bytes(), x509.load_pem_x509_certificate(cert.read_bytes()), [])


async def sign(batch, signer: ScriptSigner | None) -> None:
    """What the feed does before it publishes (hotpath/feed.py ChangeFeed._sign)."""
    if signer is not None:
        shares = batch.take_unsigned(len(os.sched_getaffinity(0)))
        await asyncio.gather(*(asyncio.to_thread(sign_entries, signer, share) for share in shares))


async def measure(dsn: str, base_url: str | None, signing: bool = False) -> dict:
    process = psutil.Process()
    signer = throwaway_signer() if signing else None
    conn = await db.connect(dsn)
    gc.collect()
    rss_before = process.memory_info().rss
    # Exactly what the boot path's full reload does (hotpath/feed.py), timed in parts.
    index = Index()
    builder = AnswerBuilder(base_url, 2.0, 60.0, signer)
    batch = builder.batch()
    building = [0.0]

    def consume(rows, params, payloads):
        started_chunk = time.perf_counter()
        index.add(batch(rows, params, payloads))
        building[0] += time.perf_counter() - started_chunk

    started = time.perf_counter()
    gc.disable()
    await loader.load(conn, consume, profiles=batch.use_profiles)
    gc.enable()
    rendered, rendered_cpu = time.perf_counter(), time.process_time()
    await sign(batch, signer)
    built = time.perf_counter()
    sign_cpu_s = time.process_time() - rendered_cpu  # the CPU it takes, whatever else the machine runs
    loaded = rendered - building[0]
    gc.collect()
    rss_after = process.memory_info().rss
    resign_s = None
    if signer is not None:
        again, rebatch = Index(), builder.batch(index)
        reload_started = time.perf_counter()
        gc.disable()
        await loader.load(conn, lambda rows, params, payloads: again.add(rebatch(rows, params, payloads)),
                          profiles=rebatch.use_profiles)
        gc.enable()
        await sign(rebatch, signer)
        resign_s = round(time.perf_counter() - reload_started, 3)
    await conn.close()
    return {
        "nodes": len(index),
        "macs": index.mac_count,
        "load_s": round(loaded - started, 3),
        "build_s": round(rendered - loaded, 3),
        "total_s": round(built - started, 3),
        "sign_s": round(built - rendered, 3),
        "sign_cpu_s": round(sign_cpu_s, 3),
        "index_rss_mb": round((rss_after - rss_before) / 2**20, 1),
        "prerendered": base_url is not None,
        "signed": signer is not None,
        "resign_s": resign_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--base-url", default="http://boot.cluster:27778")
    parser.add_argument("--sign", action="store_true", help="sign every script (a throwaway RSA-2048 key)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.dsn, args.base_url or None, args.sign))))


if __name__ == "__main__":
    main()
