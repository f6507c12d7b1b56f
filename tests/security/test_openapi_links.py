"""Finding 13: the fuzzing could not reach most operations.

The OpenAPI document had no links, so a stateful fuzzer (or a client) could
not get from a create to the operations that take the new id; thirteen
operationIds were used twice (groups and partitions, the scoped tables share
handlers), so a link by operationId could not even name its target; and every
PUT demanded If-Match, also where no ETag is ever given (roles).  The links
come from the route table, so each new create gets its own.
"""

from admin_api import openapi, service
from admin_api.app import ROUTERS


def document() -> dict:
    return openapi.build(ROUTERS, service.version())


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, entry in item.items():
            yield method.upper(), path, entry


def test_operation_ids_are_unique():
    ids = [entry["operationId"] for _, _, entry in operations(document())]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_every_create_links_to_each_operation_that_takes_its_id():
    doc = document()
    by_id = {entry["operationId"]: (method, path) for method, path, entry in operations(doc)}
    expected = {("GET", "/hsm/v2/State/Components/{id}"), ("DELETE", "/hsm/v2/groups/{name}"),
                ("GET", "/hsm/v2/groups/{name}/members"), ("PATCH", "/cloud-init/payloads/{id}"),
                ("GET", "/auth/v1/service-accounts/{id}"), ("DELETE", "/auth/v1/policies/{id}"),
                ("GET", "/discovery/v1/scans/{id}"), ("DELETE", "/power/v1/transitions/{id}")}
    linked = set()
    for method, path, entry in operations(doc):
        for status, answer in entry["responses"].items():
            for link in answer.get("links", {}).values():
                assert method == "POST" and status == "201", (method, path)
                target_method, target = by_id[link["operationId"]]
                assert target.startswith(path + "/{"), (path, target)
                assert set(link["parameters"]) <= set(openapi._path_names(target)), link
                assert all(v.startswith(("$response.body#/", "$request.path.")) for v in link["parameters"].values())
                linked.add((target_method, target))
    assert expected <= linked, expected - linked
    creates = doc["paths"]["/hsm/v2/State/Components"]["post"]["responses"]["201"]["links"]
    assert {link["parameters"]["id"] for link in creates.values()} == {"$response.body#/metadata/id"}
    account = doc["paths"]["/auth/v1/service-accounts"]["post"]["responses"]["201"]["links"]
    assert {link["parameters"]["id"] for link in account.values()} == {"$response.body#/clientId"}


def test_if_match_is_required_only_where_there_is_an_etag_to_send():
    doc = document()
    for method, path, entry in operations(doc):
        if method != "PUT":
            continue
        if_match = [p for p in entry["parameters"] if p["name"] == "If-Match"]
        # Native PUTs replace a versioned resource; roles have no ETag, nor do OpenCHAMI's shapes.
        assert bool(if_match) == (path != "/auth/v1/roles/{name}" and not path.startswith("/openchami/")), path
