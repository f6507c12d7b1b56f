"""Boot profiles on the boot path: selectors, precedence among the boot parameter scopes, per-architecture
answers, and a profile edit reaching the live index through the change feed (real PostgreSQL)."""

import asyncio
import json
import time

import msgspec

from core import profiles
from hotpath import loader
from hotpath._dispatch import Dispatcher
from hotpath.answers import AnswerBuilder
from hotpath.feed import ChangeFeed
from hotpath.index import Index
from tests.helpers.seed import add_node, add_params, add_payload


async def add_profile(conn, profile_id, selector, **fields):
    selector = profiles.check_selector(selector)
    names = ["id", "selector", "specificity", *fields]
    await conn.execute(
        f"INSERT INTO bss.profiles ({', '.join(names)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(names)))})",
        profile_id, selector, profiles.specificity(selector), *fields.values())


async def build(conn) -> Index:
    index = Index()
    batch = AnswerBuilder("http://b", 2.0, 60.0).batch()
    await loader.load(conn, lambda rows, params, payloads: index.add(batch(rows, params, payloads)),
                      chunk_rows=2, profiles=batch.use_profiles)
    return index


def test_specificity_and_ties():
    assert profiles.specificity({}) == 0
    assert profiles.specificity({"role": "Compute", "labels": {"gpu": "a100", "tier": "prod"}}) == 3
    assert profiles.specificity({"mac": "00:00:00:00:00:01"}) == profiles.IDENTITY_WEIGHT
    # Same weight, and a node could have both: a tie.  A term that differs (role) or a label value that
    # differs keeps them apart; groups never do (a node can be in both).
    assert profiles.ties({"role": "Compute"}, [("a", {"arch": "arm64"})]) == ["a"]
    assert profiles.ties({"role": "Compute"}, [("a", {"role": "Storage"})]) == []
    assert profiles.ties({"labels": {"gpu": "a100"}}, [("a", {"labels": {"gpu": "h100"}})]) == []
    assert profiles.ties({"groups": ["g1"]}, [("a", {"groups": ["g2"]})]) == ["a"]
    assert profiles.ties({"groups": ["g1"]}, [("a", {"groups": ["g1", "g2"]})]) == []  # 2 terms outrank 1


async def test_selector_precedence_among_the_scopes(conn):
    await add_node(conn, "n1", ["00:00:00:00:00:01"], groups=["g1"])
    await add_node(conn, "n2", ["00:00:00:00:00:02"], groups=["g1"])
    await add_node(conn, "n3", ["00:00:00:00:00:03"], role="Storage", groups=["g1"])
    await add_node(conn, "n4", ["00:00:00:00:00:04"], groups=["g1"])
    await conn.execute("""UPDATE smd.components SET labels = '{"gpu": "a100"}' WHERE id IN ('n1', 'n2')""")
    await add_params(conn, "g1", group="g1", kernel="http://group")
    await add_params(conn, "pin", component_id="n2", kernel="http://pinned")
    await add_profile(conn, "compute", {"role": "Compute"}, kernel="http://compute")
    await add_profile(conn, "gpu", {"role": "Compute", "labels": {"gpu": "a100"}}, kernel="http://gpu",
                      cmdline="gpu={{id}}", user_data="#cloud-config\nfrom: gpu-profile\n")
    await add_payload(conn, "g1", group="g1", user_data="#cloud-config\nfrom: group\n", meta_data={"site": "x"})
    index = await build(conn)
    # Two terms beat one; the node's own entry (component) beats any profile; a profile beats the group;
    # a node no profile matches keeps its group's parameters.
    assert index.by_id["n1"].kernel == "http://gpu" and b"gpu=n1 " in index.by_id["n1"].body
    assert index.by_id["n2"].kernel == "http://pinned"
    assert index.by_id["n4"].kernel == "http://compute"
    assert index.by_id["n3"].kernel == "http://group"
    # cloud-init: the profile's user-data beats the group's; the group's meta-data still merges in.
    assert index.cloud_by_id["n1"].user_data == b"#cloud-config\nfrom: gpu-profile\n"
    assert index.cloud_by_id["n4"].user_data == b"#cloud-config\nfrom: group\n"
    assert msgspec.json.decode(index.cloud_by_id["n1"].meta_data)["site"] == "x"


async def test_answers_per_architecture(conn):
    await add_node(conn, "x1", ["00:00:00:00:01:01"], arch="x86_64", groups=["mixed"])
    await add_node(conn, "a1", ["00:00:00:00:01:02"], arch="aarch64", groups=["mixed"])
    await add_profile(conn, "mixed", {"groups": ["mixed"]}, cmdline="console=ttyS0", arches={
        "x86_64": {"kernel": "http://img/x86/vmlinuz", "initrd": "http://img/x86/initrd", "ipxe": ""},
        "arm64": {"kernel": "http://img/arm/Image", "initrd": "", "ipxe": ""}})
    index = await build(conn)
    dispatcher = Dispatcher(index, "http://b", "http://b", 2.0, 60.0, 5.0)
    x1, a1 = index.by_mac["00:00:00:00:01:01"], index.by_mac["00:00:00:00:01:02"]
    assert x1.kernel == "http://img/x86/vmlinuz" and a1.kernel == "http://img/arm/Image"  # by the node's own arch

    def ask(mac, arch=None):
        query = f"mac={mac}" + (f"&arch={arch}" if arch else "")
        status, _, body, _, _, _ = dispatcher.dispatch("/boot/v1/bootscript", query, "b")
        assert status == 200
        return body.decode()

    assert "kernel --name kernel http://img/arm/Image " in ask("00:00:00:00:01:01", "arm64")
    assert "chain http://b/boot/v1/bootscript?mac=00:00:00:00:01:01&arch=arm64&retry=1" in \
        ask("00:00:00:00:01:01", "aarch64")
    assert "http://img/x86/vmlinuz" in ask("00:00:00:00:01:02", "x86_64")
    waiting = ask("00:00:00:00:01:02", "riscv64")
    assert "profile mixed has no kernel for architecture riscv64 (it has arm64, x86_64)" in waiting
    assert "chain http://b/boot/v1/bootscript?mac=00:00:00:00:01:02&arch=riscv64\n" in waiting
    assert "kernel" not in waiting.replace("no kernel", "")
    # Nothing from the request goes into the script unless it is a plain short word.
    assert "(unnamed)" in ask("00:00:00:00:01:02", "x%0Aboot%20||%20shell")


async def test_a_profile_edit_reaches_the_live_index(conn, dsn):
    for i in range(6):
        await add_node(conn, f"n{i}", [f"00:00:00:00:02:0{i}"], role="Compute" if i < 4 else "Storage")
    await conn.execute("""UPDATE smd.components SET labels = '{"tier": "prod"}' WHERE id IN ('n0', 'n1', 'n4')""")
    await add_params(conn, "site", kernel="http://site")
    await add_profile(conn, "prod", {"labels": {"tier": "prod"}}, kernel="http://prod-1")
    holder = {"index": Index()}
    feed = ChangeFeed(dsn, AnswerBuilder("http://b", 2.0, 60.0), lambda index: holder.update(index=index),
                      lambda: holder["index"], coalesce_s=0.002, check_interval_s=3600)
    feed.start()
    try:
        await asyncio.wait_for(feed.ready.wait(), 10)

        def kernels():
            return {n: holder["index"].by_id[n].kernel for n in sorted(holder["index"].by_id)}

        assert kernels() == {"n0": "http://prod-1", "n1": "http://prod-1", "n2": "http://site",
                             "n3": "http://site", "n4": "http://prod-1", "n5": "http://site"}
        reloads = feed.full_reloads
        # The selector narrows to Compute: n4 (matched by the old selector only) falls back to the site.
        await conn.execute("""UPDATE bss.profiles SET kernel = 'http://prod-2', specificity = 2,
                              selector = '{"role": "Compute", "labels": {"tier": "prod"}}' WHERE id = 'prod'""")
        await until(lambda: kernels()["n0"] == "http://prod-2" and kernels()["n4"] == "http://site")
        assert kernels()["n1"] == "http://prod-2" and kernels()["n2"] == "http://site"
        # A label added to a node makes it match (the component's own notification).
        await conn.execute("""UPDATE smd.components SET labels = '{"tier": "prod"}' WHERE id = 'n3'""")
        await until(lambda: kernels()["n3"] == "http://prod-2")
        await conn.execute("DELETE FROM bss.profiles")
        await until(lambda: set(kernels().values()) == {"http://site"})
        assert feed.full_reloads == reloads  # targeted re-renders, not full reloads
    finally:
        await feed.stop()


async def until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the index never showed it"
        await asyncio.sleep(0.005)


async def test_the_notification_names_old_and_new_selectors(conn, dsn):
    await add_profile(conn, "pp", {"role": "Compute"}, kernel="http://k")
    heard: list = []
    await conn.add_listener("chamicore_boot", lambda *args: heard.append(json.loads(args[3])))
    await conn.execute("""UPDATE bss.profiles SET selector = '{"role": "Storage"}' WHERE id = 'pp'""")
    await until(lambda: heard)
    assert heard[0]["table"] == "bss.profiles"
    assert sorted(s["role"] for s in heard[0]["keys"]["selectors"]) == ["Compute", "Storage"]


def test_templates_are_checked_when_written():
    import pytest

    from core import templates

    assert templates.check("console=ttyS0 quiet", "$.spec.cmdline") is None  # plain text stays plain
    assert templates.check("nid={{ nid }} gpu={{ labels.get('gpu', 'none') }}", "$.spec.cmdline") is not None
    for source, line, words in (
            ("a\nb\n{% if %}", 3, "Expected an expression"),
            ("{{ secret }}", 1, "unknown variable 'secret'"),
            ("x\n{{ id | shell }}", 2, "No filter named 'shell'"),
            ("{{ ''.__class__.__mro__ }}", 1, "attributes starting with _"),
            ("{{ ''.__class__ }}", 1, "'__class__': attributes starting with _"),
            ("{{ labels['__class__'] }}", 1, "attributes starting with _"),
            ("\n{% include '/etc/passwd' %}", 2, "include, import and extends are not allowed"),
            ("{% import 'os' as os %}", 1, "not allowed"),
            ("{{ groups.append('x') }}", 1, "unsafe"),
            ("{{ range.__globals__ }}", 1, "attributes starting with _")):
        with pytest.raises(templates.TemplateProblem) as raised:
            templates.check(source, "$.spec.cmdline")
        assert f"$.spec.cmdline: line {line}: " in str(raised.value) and words in str(raised.value), source


async def test_templates_render_per_node_and_see_only_that_node(conn):
    await add_node(conn, "n1", ["00:00:00:00:03:01"], nid=1, groups=["tt"])
    await add_node(conn, "n2", ["00:00:00:00:03:02"], nid=2, groups=["tt"])
    await add_node(conn, "n3", ["00:00:00:00:03:03"], nid=3, groups=["tt"])
    await conn.execute("""UPDATE smd.components SET labels = '{"gpu": "a100"}' WHERE id = 'n1'""")
    # n3's label would end the kernel command: the rendered cmdline is checked like any stored one.
    await conn.execute("""UPDATE smd.components SET labels = '{"gpu": "a || shell"}' WHERE id = 'n3'""")
    await add_profile(conn, "tmpl", {"groups": ["tt"]}, kernel="http://img/vmlinuz",
                      cmdline="nid={{ nid }} gpu={{ labels.get('gpu', 'none') }} {% if 'n2' in id %}two{% endif %}",
                      user_data="#cloud-config\nhostname: {{ hostname }}\nmacs: {{ mac }}\n",
                      vendor_data="{{ labels.gpu }}")
    index = await build(conn)
    n1, n2, n3 = (index.by_id[n] for n in ("n1", "n2", "n3"))
    assert n1.cmdline == "nid=1 gpu=a100 " and b"nid=1 gpu=a100 initrd" not in n1.body
    assert b"kernel" not in n3.body.split(b"\n")[1] and b"boot parameter cmdline is not safe" in n3.body
    assert index.cloud_by_id["n1"].user_data == b"#cloud-config\nhostname: n1\nmacs: 00:00:00:00:03:01\n"
    assert index.cloud_by_id["n2"].user_data == b"#cloud-config\nhostname: n2\nmacs: 00:00:00:00:03:02\n"
    assert index.cloud_by_id["n1"].vendor_data == b"a100"
    # n2 has no gpu label: StrictUndefined fails its vendor-data, so it waits (naming why) instead of booting.
    assert n2.body is None and "vendor-data template failed: line 1: UndefinedError" in n2.wait_message
    assert index.cloud_by_id["n2"].vendor_data.startswith(b"#cloud-config\n# Chamicore: profile tmpl vendor-data")


SCRIPT = """#!ipxe
echo {{ profile }}: {{ id }} {{ labels.get('tier', 'none') }} via {{ baseUrl }}
kernel {{ kernel }} {{ params }} || goto retry
{% if initrd %}initrd {{ initrd }} || goto retry
{% endif %}boot || goto retry
"""


async def test_a_profiles_script_template_is_rendered_per_node_and_served_per_request(conn):
    await add_node(conn, "s1", ["00:00:00:00:04:01"], nid=1, arch="x86_64", groups=["st"])
    await add_node(conn, "s2", ["00:00:00:00:04:02"], nid=2, arch="aarch64", groups=["st"])
    await add_node(conn, "s3", ["00:00:00:00:04:03"], nid=3, arch="x86_64", groups=["st"])
    await conn.execute("""UPDATE smd.components SET labels = '{"tier": "prod"}' WHERE id = 's1'""")
    await conn.execute("""UPDATE smd.components SET labels = '{"tier": "a || shell"}' WHERE id = 's3'""")
    await add_profile(conn, "scripted", {"groups": ["st"]}, cmdline="quiet", script=SCRIPT, arches={
        "x86_64": {"kernel": "http://img/x86/vmlinuz", "initrd": "http://img/x86/initrd", "ipxe": ""},
        "arm64": {"kernel": "http://img/arm/Image", "initrd": "", "ipxe": ""}})
    index = await build(conn)
    token = await conn.fetchval("SELECT cloud_init_token FROM smd.components WHERE id = 's1'")
    s1, s2, s3 = (index.by_id[n] for n in ("s1", "s2", "s3"))
    # Rendered ahead for the configured boot URL: one lookup per request, as for any script.
    assert s1.body.decode() == (
        "#!ipxe\necho scripted: s1 prod via http://b\n"
        "kernel http://img/x86/vmlinuz quiet initrd=initrd BOOTIF=01-00-00-00-00-04-01 "
        f"ds=nocloud-net;s=http://b/cloud-init/s1/{token}/ || goto retry\n"
        "initrd http://img/x86/initrd || goto retry\nboot || goto retry\n"
        ":retry\nsleep 2\nchain http://b/boot/v1/bootscript?mac=00:00:00:00:04:01&arch=x86_64&retry=1\n")
    # The arm64 node: its own architecture's kernel, and no initrd line (the template's {% if %}).
    assert "kernel http://img/arm/Image quiet BOOTIF" in s2.body.decode() and b"\ninitrd" not in s2.body
    # Nothing in its kernel, initrd or cmdline names a node variable: the entry keeps none (index memory).
    assert s1.values == () and s1.arches["arm64"].values == ()
    # A printed value that would add an iPXE command makes that node wait, naming why; the others boot.
    assert s3.body is None and "profile scripted script template failed: line 2" in s3.wait_message
    assert "||" not in s3.wait_message
    # Per request, the slots are filled for what was asked: another architecture (its script rendered when the
    # index was built), a Host-derived base URL, a retry count (no Jinja then).
    dispatcher = Dispatcher(index, None, "http://fallback", 2.0, 60.0, 5.0)
    status, _, body, *_ = dispatcher.dispatch("/boot/v1/bootscript", "mac=00:00:00:00:04:01&arch=arm64&retry=2",
                                              "boot.example:8080")
    text = body.decode()
    assert status == 200 and "echo scripted: s1 prod via http://boot.example:8080\n" in text
    assert "kernel http://img/arm/Image quiet BOOTIF=01-00-00-00-00-04-01 " \
           f"ds=nocloud-net;s=http://boot.example:8080/cloud-init/s1/{token}/ || goto retry" in text
    assert "initrd" not in text.replace("initrd=initrd", "")  # rendered per architecture: arm64 has no initrd
    assert text.endswith(":retry\nsleep 8\nchain http://boot.example:8080/boot/v1/bootscript?"
                         "mac=00:00:00:00:04:01&arch=arm64&retry=3\n")
    # Asked by name: no MAC, no seed token in it.
    status, _, body, *_ = dispatcher.dispatch("/boot/v1/bootscript", "name=s1", "b")
    assert status == 200 and "quiet initrd=initrd ds=nocloud-net;s=http://b/cloud-init/s1/ ||" in body.decode()


async def test_a_profiles_plain_script_and_one_written_around_the_api(conn):
    await add_node(conn, "p1", ["00:00:00:00:05:01"], groups=["local"])
    await add_node(conn, "p2", ["00:00:00:00:05:02"], groups=["broken"])
    # A plain script (no template markers): boot from the local disk, no kernel at all.
    await add_profile(conn, "local", {"groups": ["local"]}, script="#!ipxe\nsanboot --no-describe --drive 0x80\n")
    # Stored around the admin API: a script defining the boot path's :retry label is refused at build time.
    await add_profile(conn, "broken", {"groups": ["broken"]}, kernel="http://k", script="#!ipxe\n:retry\nshell\n")
    index = await build(conn)
    assert index.by_id["p1"].body == (b"#!ipxe\nsanboot --no-describe --drive 0x80\n:retry\nsleep 2\n"
                                      b"chain http://b/boot/v1/bootscript?mac=00:00:00:00:05:01&retry=1\n")
    p2 = index.by_id["p2"]
    assert p2.body is None and "profile broken script: line 2: the label :retry is the boot path" in p2.wait_message
