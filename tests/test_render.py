"""The compiled renderer, against its pure-Python twin and against the spec."""

import importlib.machinery

from hypothesis import given, settings
from hypothesis import strategies as st

from core.templates import SCRIPT_SLOTS
from hotpath import _render, _render_py


def test_compiled_renderer_loaded():
    # Fails if the extension did not build and something imported a .py instead.
    assert _render.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), _render.__file__


words = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
variables = st.dictionaries(st.sampled_from(["id", "mac", "nid", "role", "hostname", "arch", "x y"]), words, max_size=7)
templates = st.lists(st.one_of(words, st.sampled_from(["{{id}}", "{{ mac }}", "{{nid}}", "{{", "}}", "{{unknown}}",
                                                       "{{hostname}}", "initrd=x", "BOOTIF=01-x", "ds=foo", " "])),
                     max_size=8).map("".join)


@settings(max_examples=300)
@given(templates, variables)
def test_fill_variables_twin(template, values):
    assert _render.fill_variables(template, values) == _render_py.fill_variables(template, values)


# A profile's rendered script: text with the request-dependent slots in it (core/templates.SCRIPT_SLOTS).
scripts = st.one_of(st.none(), st.lists(st.one_of(words, st.sampled_from([*SCRIPT_SLOTS.values(), "\n", "#!ipxe\n"])),
                                        max_size=10).map("".join))


@settings(max_examples=300)
@given(templates, templates, templates, st.lists(words, min_size=12, max_size=12).map(tuple), words,
       st.integers(0, 64), st.floats(0.1, 30), st.floats(30, 600), st.sampled_from(["", "0123abcd" * 4]),
       st.booleans(), scripts)
def test_bootscript_twin(kernel, initrd, cmdline, values, node_id, retry, base, cap, seed_token, signed, script):
    args = (kernel, initrd, cmdline, values, node_id, "aa:bb:cc:dd:ee:ff", "mac=aa:bb:cc:dd:ee:ff",
            "http://boot:8080", retry, base, cap, seed_token, signed, script)
    assert _render.render_bootscript(*args) == _render_py.render_bootscript(*args)


def test_a_profile_script_gets_its_slots_filled_and_the_retry_label():
    slots = SCRIPT_SLOTS
    script = (f"#!ipxe\necho {{id}} on {slots['baseUrl']}\nkernel {slots['kernel']} {slots['params']} || goto retry\n"
              f"initrd {slots['initrd']} || goto retry\nboot || goto retry\n")
    values = ("n7", "7", "Compute", "", "nid0007", "x86_64", "Node", "", "", "", "", "")
    for module in (_render, _render_py):
        body = module.render_bootscript("http://img/{{id}}/vmlinuz", "http://img/initrd", "quiet", values, "n7",
                                        "aa:bb:cc:dd:ee:01", "mac=aa:bb:cc:dd:ee:01", "http://b:8", 1, 2.0, 60.0,
                                        "t" * 32, False, script).decode()
        assert body == ("#!ipxe\necho {id} on http://b:8\n"
                        "kernel http://img/n7/vmlinuz quiet initrd=initrd BOOTIF=01-aa-bb-cc-dd-ee-01 "
                        f"ds=nocloud-net;s=http://b:8/cloud-init/n7/{'t' * 32}/ || goto retry\n"
                        "initrd http://img/initrd || goto retry\nboot || goto retry\n"
                        ":retry\nsleep 4\nchain http://b:8/boot/v1/bootscript?mac=aa:bb:cc:dd:ee:01&retry=2\n")
        # Signed: the retry returns to boot.ipxe (which verifies what it runs) instead of chaining.
        signed = module.render_bootscript("http://k", "", "", values, "n7", "aa:bb:cc:dd:ee:01", "mac=x", "http://b",
                                          0, 2.0, 60.0, "", True, "#!ipxe\nexit 0").decode()
        assert signed == "#!ipxe\nexit 0\n:retry\nsleep 2\nexit 1\n"
        # A stored kernel that is not safe still makes the node wait, script or not.
        refused = module.render_bootscript("http://k x", "", "", values, "n7", "aa:bb:cc:dd:ee:01", "mac=x",
                                           "http://b", 0, 2.0, 60.0, "", False, script).decode()
        assert "boot parameter kernel is not safe" in refused and "echo {id}" not in refused


def test_seed_url_carries_the_token():
    for module in (_render, _render_py):
        script = module.render_bootscript("http://k", "", "", NO_VALUES, "n1", "aa:bb:cc:dd:ee:ff", "mac=x",
                                          "http://b", 0, 2.0, 60.0, "0123abcd" * 4).decode()
        assert " ds=nocloud-net;s=http://b/cloud-init/n1/0123abcd0123abcd0123abcd0123abcd/ || goto retry" in script


@given(st.integers(0, 1000), st.floats(0.1, 100), st.floats(0.1, 1000))
def test_retry_schedule_twin(retry, base, cap):
    assert _render.retry_delay(retry, base, cap) == _render_py.retry_delay(retry, base, cap)
    assert _render.next_retry(retry, base, cap) == _render_py.next_retry(retry, base, cap)


@given(words, st.integers(1, 3600))
def test_wait_and_first_stage_twins(message, delay):
    assert _render.render_wait_script(message, "mac=x", "http://b", delay) == \
        _render_py.render_wait_script(message, "mac=x", "http://b", delay)
    assert _render.render_first_stage("http://b:1") == _render_py.render_first_stage("http://b:1")


NO_VALUES = ("",) * 12


def test_node_variables_twin():
    values = tuple(str(i) for i in range(12))
    assert _render.node_variables(values, "m") == _render_py.node_variables(values, "m")
    assert set(_render.node_variables(values, "m")) == {*_render.VARIABLE_NAMES, "mac"}


def test_bootscript_shape():
    script = _render.render_bootscript(
        "http://images/{{arch}}/vmlinuz", "http://images/{{arch}}/initrd", "console=ttyS0 nid={{nid}}",
        ("node-17", "17", "Compute", "", "node-17", "x86_64", "Node", "", "", "0", "", ""), "node-17", "aa:bb:cc:dd:ee:ff", "mac=aa:bb:cc:dd:ee:ff",
        "http://boot:27778", 0, 2.0, 60.0).decode()
    assert script.splitlines() == [
        "#!ipxe",
        "kernel --name kernel http://images/x86_64/vmlinuz console=ttyS0 nid=17 initrd=initrd "
        "BOOTIF=01-aa-bb-cc-dd-ee-ff ds=nocloud-net;s=http://boot:27778/cloud-init/node-17/ || goto retry",
        "initrd --name initrd http://images/x86_64/initrd || goto retry",
        "boot || goto retry",
        ":retry",
        "sleep 2",
        "chain http://boot:27778/boot/v1/bootscript?mac=aa:bb:cc:dd:ee:ff&retry=1",
    ]


def test_stored_arguments_are_not_doubled():
    script = _render.render_bootscript(
        "http://k", "http://i", "initrd=custom BOOTIF=01-11-22-33-44-55-66 ds=nocloud;s=http://x/", NO_VALUES,
        "n1", "aa:bb:cc:dd:ee:ff", "mac=aa:bb:cc:dd:ee:ff", "http://b", 0, 2.0, 60.0).decode()
    kernel_line = script.splitlines()[1]
    assert kernel_line.count("initrd=") == 1 and kernel_line.count("BOOTIF=") == 1 and kernel_line.count("ds=") == 1


def test_no_initrd_means_no_initrd_line():
    script = _render.render_bootscript("http://k", "", "", NO_VALUES, "n1", "aa:bb:cc:dd:ee:ff", "mac=x", "http://b",
                                       0, 2.0, 60.0).decode()
    assert "initrd" not in script


def test_retry_delay_grows_and_caps():
    delays = [_render.retry_delay(n, 2.0, 60.0) for n in range(10)]
    assert delays == [2, 4, 8, 16, 32, 60, 60, 60, 60, 60]
    # The chained retry number stops growing once the delay is capped.
    assert [_render.next_retry(n, 2.0, 60.0) for n in (0, 4, 5, 9)] == [1, 5, 5, 9]


def test_signed_first_stage_runs_only_verified_scripts():
    """With signing on, boot.ipxe fetches each node's script and its .sig (the same query) and runs the script
    only after imgverify; a script that fails verification is freed and the next device is tried."""
    text = _render.render_first_stage_signed("http://b:1").decode()
    assert text == _render_py.render_first_stage_signed("http://b:1").decode()
    lines = text.splitlines()
    fetch = lines.index("imgfetch --name script http://b:1/boot/v1/bootscript?${query} || goto ${resume}")
    assert lines[fetch + 1] == "imgverify script http://b:1/boot/v1/bootscript.sig?${query} || goto refused"
    assert lines[fetch + 2] == "imgexec --autofree script || goto ${resume}"
    assert lines[lines.index(":refused") + 1] == "imgfree script"
    assert "chain" not in text  # nothing runs unverified
    assert lines.count("set query mac=${net${idx}/mac:hexhyp}&arch=${buildarch}&uuid=${uuid}") == 1


def test_a_signed_script_returns_to_boot_ipxe_instead_of_chaining():
    """A chain from a verified script would run whatever answered, unverified: a signed script waits, then
    `exit 1` back to the signed boot.ipxe, which fetches and verifies again."""
    args = ("http://k/{{id}}", "http://i", "quiet", NO_VALUES[:0] + ("n1",) + NO_VALUES[1:], "n1", "aa:bb:cc:00:00:01",
            "mac=aa:bb:cc:00:00:01", "http://b", 2, 2.0, 60.0, "t" * 32)
    for module in (_render, _render_py):
        plain, signed = module.render_bootscript(*args), module.render_bootscript(*args, True)
        assert plain.endswith(b"sleep 8\nchain http://b/boot/v1/bootscript?mac=aa:bb:cc:00:00:01&retry=3\n")
        assert signed == plain[:plain.rindex(b"chain ")] + b"exit 1\n"
        unsafe = module.render_bootscript("http://k/{{id}}", "", "a;b ; c", *args[3:], True)
        assert unsafe.startswith(b"#!ipxe\necho Chamicore: node n1 cannot boot: boot parameter cmdline")
        assert unsafe.endswith(b"sleep 8\nexit 1\n") and b"chain" not in unsafe
    assert _render.render_bootscript(*args, True) == _render_py.render_bootscript(*args, True)
