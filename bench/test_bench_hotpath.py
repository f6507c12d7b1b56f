"""pytest-benchmark suites of the boot path: figures and ratios, no timed asserts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import figures
from hotpath import _dispatch, _dispatch_py, _render, _render_py
from hotpath.answers import AnswerBuilder
from hotpath.index import Index
from tests.helpers.paths import ROOT

RENDERERS = {"compiled": _render, "python-twin": _render_py}
DISPATCHERS = {"compiled": _dispatch, "python-twin": _dispatch_py}

VARIABLES = ("node-1017", "1017", "Compute", "", "node-1017", "x86_64", "Node", "R25", "17", "0", "", "")
RENDER_ARGS = ("http://images.cluster/{{arch}}/vmlinuz", "http://images.cluster/{{arch}}/initrd.img",
               "console=ttyS0,115200 root=live:http://images.cluster/rootfs nid={{nid}} hostname={{hostname}} quiet",
               VARIABLES, "node-1017", "02:00:00:00:03:f9", "mac=02:00:00:00:03:f9", "http://boot.cluster:27778",
               0, 2.0, 60.0, "000000000000000000000000000003f9")


def synthetic_rows(nodes: int) -> tuple[list, list, list]:
    """Node, boot-parameter and payload rows as the loader hands them over."""
    from bench.fleet import ip_of, mac_of, token_of

    rows = [{"id": f"node-{i}", "type": "Node", "role": "Compute", "sub_role": "", "nid": i, "arch": "x86_64",
             "enabled": True, "rack": f"R{i // 40}", "unit": i % 40, "slot": 0, "sub_slot": 0, "groups": [],
             "macs": [mac_of(i)], "ip_addrs": [[{"ipAddress": ip_of(i), "network": "mgmt"}]],
             "cloud_init_token": token_of(i)}
            for i in range(1, nodes + 1)]
    params = [{"mac": None, "component_id": None, "group_name": None, "role": "Compute", "kernel": RENDER_ARGS[0],
               "initrd": RENDER_ARGS[1], "cmdline": RENDER_ARGS[2]}]
    payloads = [{"component_id": None, "group_name": None, "role": "Compute", "user_data": "#cloud-config\n",
                 "meta_data": {"cluster": "bench"}, "vendor_data": None}]
    return rows, params, payloads


def build_index(nodes: int) -> Index:
    return Index.from_answers(AnswerBuilder("http://boot.cluster:27778", 2.0, 60.0).batch()(*synthetic_rows(nodes)))


@pytest.mark.parametrize("impl", list(RENDERERS))
def test_render_one_node(benchmark, impl):
    benchmark(RENDERERS[impl].render_bootscript, *RENDER_ARGS)
    figures.record(benchmark, f"test_render_one_node[{impl}]")


@pytest.mark.parametrize("impl", list(DISPATCHERS))
def test_dispatch_one_request(benchmark, impl):
    from bench.fleet import mac_of

    index = build_index(10_000)
    dispatcher = DISPATCHERS[impl].Dispatcher(index, "http://boot.cluster:27778", "http://x", 2.0, 60.0, 10)
    query = "mac=" + mac_of(5000).upper().replace(":", "-")
    answer = benchmark(dispatcher.dispatch, "/boot/v1/bootscript", query, "")
    assert answer[0] == 200
    figures.record(benchmark, f"test_dispatch_one_request[{impl}]")


@pytest.mark.parametrize("nodes", [10_000, 100_000])
def test_index_build_in_memory(benchmark, nodes):
    rows = synthetic_rows(nodes)
    builder = AnswerBuilder("http://boot.cluster:27778", 2.0, 60.0)
    index = benchmark.pedantic(lambda: Index.from_answers(builder.batch()(*rows)), rounds=3, iterations=1)
    assert len(index) == nodes


@pytest.mark.parametrize("nodes", [1_000, 10_000, 100_000])
def test_index_build_from_postgres(fleet_dsn, nodes):
    """Full reload as the boot path does it, in a fresh process for a clean RSS figure."""
    result = subprocess.run([sys.executable, "-m", "bench.indexscale", "--dsn", fleet_dsn[nodes]],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    data = json.loads(result.stdout)
    assert data["nodes"] == nodes
    figures.FIGURES.append(
        f"index build {nodes:>7,} nodes: read {data['load_s']:.3f} s + render {data['build_s']:.3f} s = "
        f"{data['total_s']:.3f} s, index RSS {data['index_rss_mb']:.1f} MB "
        f"({data['index_rss_mb'] * 1024 / nodes:.2f} KB/node)")
