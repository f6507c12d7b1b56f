"""schemathesis fuzzes the admin API over a real socket, from its own /api/openapi.json.

Stateless: every operation gets generated valid and invalid requests, with a
valid admin token (the ignored_auth check also tries none and a bad one).
The ids in paths are those of real resources seeded first, one of each kind
(and seeded again after a delete), so that the requests reach the handlers'
logic instead of stopping at a 404.  Stateful: schemathesis follows the
OpenAPI links (from a create to the operations that take the new id) through
random sequences of calls.  About one case in ten of the operations they fit
carries a class of bad input that once gave a 500 (paging numbers int() chokes
on, bodies nested too deep, token-exchange claims that are not strings);
schemathesis's own strings bring control characters and lone surrogates.
The checks fail on any 5xx, on answers that break the documented schema, and
on invalid input that is accepted; the last test counts the operations that
answered anything but 404, and fails if one never did.
"""

import asyncio
import base64
import collections
import contextlib
import json
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation

from core import db
from tests.helpers.postgres import create_database
from tests.helpers.servers import ServiceServer
from tests.helpers.tokens import token_for

EXAMPLES = 25  # per operation, stateless
SCENARIOS = 40  # stateful sequences, of up to STEPS calls each
STEPS = 6
EXCLUDED_CHECKS = [
    # PUT needs If-Match: without it the answer is 428, a 4xx, and that is the point.
    schemathesis.checks.missing_required_header,
    # "Valid" by the schema alone is not valid here: a parentId must name a component that exists,
    # a MAC must be a MAC. Invalid input must still be refused (negative_data_rejection stays on).
    schemathesis.checks.positive_data_acceptance,
]

# (method, path, body) of one resource of each kind, in dependency order; 409 (it exists) is fine.
SEEDS = [
    ("POST", "/auth/v1/credentials", {"id": "fuzz-cred", "username": "root", "secret": "fuzz-secret"}),
    ("POST", "/hsm/v2/State/Components", {"metadata": {"id": "fuzz-node"}, "spec": {"type": "Node", "nid": 1}}),
    ("POST", "/hsm/v2/Inventory/EthernetInterfaces",
     {"metadata": {"id": "fuzz-nic"}, "spec": {"componentId": "fuzz-node", "macAddr": "02:00:00:00:00:01"}}),
    ("POST", "/hsm/v2/groups", {"metadata": {"id": "fuzz-group"}, "spec": {"members": []}}),
    ("POST", "/hsm/v2/groups/fuzz-group/members", {"id": "fuzz-node"}),
    ("POST", "/hsm/v2/partitions", {"metadata": {"id": "fuzz-partition"}, "spec": {"members": []}}),
    ("POST", "/hsm/v2/partitions/fuzz-partition/members", {"id": "fuzz-node"}),
    ("POST", "/boot/v1/bootparams",
     {"metadata": {"id": "fuzz-bp"}, "spec": {"componentId": "fuzz-node", "kernel": "http://boot/vmlinuz"}}),
    ("POST", "/cloud-init/payloads",
     {"metadata": {"id": "fuzz-ci"}, "spec": {"componentId": "fuzz-node", "userData": "#cloud-config\n"}}),
    ("POST", "/boot/v1/profiles", {"metadata": {"id": "fuzz-profile"},
                                   "spec": {"selector": {"componentId": "fuzz-node"}, "kernel": "http://boot/vmlinuz"}}),
    ("POST", "/auth/v1/service-accounts", {"clientId": "fuzz-account", "roles": ["viewer"]}),
    ("POST", "/auth/v1/users", {"username": "fuzz-user", "password": "fuzz password 123", "roles": ["viewer"]}),
    ("POST", "/auth/v1/policies", {"id": "fuzz-policy", "issuer": "http://idp.example", "subject": "alice",
                                   "roles": ["viewer"]}),
    ("PUT", "/auth/v1/roles/fuzz-role", {"scopes": ["read:smd"]}),
    ("POST", "/hsm/v2/State/Components", {"metadata": {"id": "fuzz-bmc"}, "spec": {"type": "BMC"}}),
    ("POST", "/hsm/v2/Inventory/RedfishEndpoints",
     {"metadata": {"id": "fuzz-bmc"}, "spec": {"address": "https://127.0.0.1:9", "credentialId": "fuzz-cred"}}),
    ("POST", "/discovery/v1/targets", {"metadata": {"id": "fuzz-target"},
                                       "spec": {"driver": "redfish", "address": "127.0.0.1:9"}}),
]
# The id each path parameter takes, by the collection it names (the path before the parameter).
IDS = {
    "/hsm/v2/State/Components": "fuzz-node", "/hsm/v2/nodes": "fuzz-node", "/boot/v1/telemetry": "fuzz-node",
    "/boot/v1/effective": "fuzz-node", "/cloud-init/effective": "fuzz-node",
    "/hsm/v2/Inventory/EthernetInterfaces": "fuzz-nic", "/hsm/v2/groups": "fuzz-group",
    "/hsm/v2/groups/{name}/members": "fuzz-node", "/hsm/v2/partitions": "fuzz-partition",
    "/hsm/v2/partitions/{name}/members": "fuzz-node", "/boot/v1/bootparams": "fuzz-bp",
    "/boot/v1/profiles": "fuzz-profile",
    "/cloud-init/payloads": "fuzz-ci", "/auth/v1/service-accounts": "fuzz-account", "/auth/v1/roles": "fuzz-role",
    "/auth/v1/users": "fuzz-user",
    "/auth/v1/policies": "fuzz-policy", "/auth/v1/credentials": "fuzz-cred",
    "/hsm/v2/Inventory/RedfishEndpoints": "fuzz-bmc", "/discovery/v1/targets": "fuzz-target",
    "/hsm/v2/Inventory/Hardware": "fuzz-node",
    # The OpenCHAMI face names the same resources.
    "/openchami/hsm/v2/State/Components": "fuzz-node", "/openchami/hsm/v2/State/Components/ByNID": "1",
    "/openchami/hsm/v2/Inventory/EthernetInterfaces": "fuzz-nic", "/openchami/hsm/v2/memberships": "fuzz-node",
    "/openchami/hsm/v2/Inventory/RedfishEndpoints": "fuzz-bmc",
    "/openchami/hsm/v2/Inventory/ComponentEndpoints": "fuzz-bmc", "/openchami/hsm/v2/groups": "fuzz-group",
    "/openchami/hsm/v2/groups/{label}/members": "fuzz-node", "/openchami/cloud-init/admin/groups": "fuzz-group",
    "/openchami/cloud-init/admin/instance-info": "fuzz-node",
    "/openchami/cloud-init/admin/impersonation": "fuzz-node",
    "/openchami/cloud-init/admin/impersonation/{id}": "user-data",
}
TELEMETRY = ("INSERT INTO bss.boot_telemetry (component_id, endpoint, seen_at, requests) "
             "SELECT 'fuzz-node', 'bootscript', now(), 1 WHERE EXISTS (SELECT FROM smd.components WHERE id = 'fuzz-node') "
             "ON CONFLICT DO NOTHING")
# Only a scan writes a hardware inventory: the seeded node's is written as one would.
HARDWARE = ("INSERT INTO smd.hardware (component_id, document, processor_models, gpu_models) "
            "SELECT 'fuzz-node', '{\"processors\": [{\"id\": \"/redfish/v1/Systems/1/Processors/GPU0\", "
            "\"type\": \"GPU\", \"model\": \"H100\"}], \"firmware\": [{\"id\": \"/redfish/v1/UpdateService/"
            "FirmwareInventory/BMC\", \"name\": \"BMC\", \"version\": \"1.2.3\"}]}', '{}', '{H100}' "
            "WHERE EXISTS (SELECT FROM smd.components WHERE id = 'fuzz-node') ON CONFLICT DO NOTHING")

MALFORMED_NUMBERS = ["--5", "--1", "-", "+-3", "1-1", "0x10", "\u0663", "9" * 13]
EXCHANGE = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}
STRANGE_ISSUERS = [["http://idp"], {"url": "http://idp"}, 7, None, True]

answers: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)  # "GET /path" -> statuses
ran: set[str] = set()  # which of the fuzz tests ran in this session
mixed_in: collections.Counter = collections.Counter()  # bad input class -> cases sent


class FuzzedAdmin:
    """The admin server under fuzzing, with an admin token and the seeded resources."""

    def __init__(self, server: ServiceServer, dsn: str) -> None:
        self.server, self.dsn = server, dsn
        self.token = asyncio.run(token_for(server.url, dsn))

    def request(self, method: str, path: str, body=None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read() or b"{}")

    def seed(self) -> None:
        for method, path, body in SEEDS:
            status, answer = self.request(method, path, body)
            assert status in (200, 201, 409), (path, status, answer)

        async def telemetry() -> None:
            conn = await db.connect(self.dsn)
            try:
                await conn.execute(TELEMETRY)
                await conn.execute(HARDWARE)
            finally:
                await conn.close()

        asyncio.run(telemetry())

    def seed_once(self) -> None:
        """Everything, and a scan and a power transition (whose ids the server chooses)."""
        self.seed()
        status, scan = self.request("POST", "/discovery/v1/scans", {"targets": ["fuzz-target"]})
        assert status == 201, scan
        status, transition = self.request("POST", "/power/v1/transitions", {"operation": "On", "nodes": ["fuzz-node"]})
        assert status == 201, transition
        IDS["/discovery/v1/scans"] = scan["metadata"]["id"]
        IDS["/power/v1/transitions"] = IDS["/openchami/transitions"] = IDS["/openchami/v1/transitions"] = \
            transition["id"]

    def after(self, method: str, path: str, status: int) -> None:
        answers[f"{method.upper()} {path}"][status] += 1
        if status < 300 and (method.upper() == "DELETE" or path.endswith("/decommission")):
            self.seed()  # what the fuzzer deleted, and what went with it


def use_seeded_ids(case) -> None:
    """Valid cases name the seeded resource of each path parameter's collection; invalid ones keep the
    generated ids, so that bad and unknown ids are tried too."""
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    for name in case.path_parameters or {}:
        collection = case.operation.path.split("/{" + name + "}")[0]
        if collection in IDS:
            case.path_parameters[name] = IDS[collection]


def _segment(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def exchange_with_issuer(issuer) -> dict:
    """A token-exchange request whose subject token's (unverified) `iss` is `issuer`."""
    claims = {"iss": issuer, "sub": "alice", "aud": "chamicore", "exp": 4102444800}
    token = ".".join((_segment({"alg": "RS256", "kid": "k1"}), _segment(claims), _segment("sig")))
    return {**EXCHANGE, "subject_token": token}


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def now_and_then(usual, unusual: st.SearchStrategy, one_in: int = 10) -> st.SearchStrategy:
    """Usually `usual`, about once in `one_in` something drawn from `unusual`."""
    return st.integers(1, one_in).flatmap(lambda roll: unusual if roll == one_in else st.just(usual))


def mix_in_bad_input_classes(schema, paging: set[str]) -> None:
    """Hooks that give about one case in ten of the operations they fit (one in three at the token endpoint)
    a class of bad input that once gave a 500: a paging number in a shape int() chokes on, a body nested deeper than the API takes, a
    token-exchange subject token whose `iss` is not a string."""

    def label(context) -> str:
        return f"{context.operation.method.upper()} {context.operation.path}"

    def malformed_paging(context, query):
        if label(context) not in paging:
            return st.just(query)
        return now_and_then(query, st.tuples(st.sampled_from(["limit", "offset"]), st.sampled_from(MALFORMED_NUMBERS))
                            .map(lambda bad: {**(query or {}), bad[0]: bad[1]}))

    def deep_or_strange(context, body):
        if context.operation.path == "/auth/v1/token":
            return now_and_then(body, st.sampled_from(STRANGE_ISSUERS).map(exchange_with_issuer), one_in=3)
        if isinstance(body, dict):
            return now_and_then(body, st.sampled_from([65, 200]).map(lambda depth: {**body, "spec": nested(depth)}))
        return st.just(body)

    schema.hooks.register_hook_with_name(malformed_paging, "flatmap_query")
    schema.hooks.register_hook_with_name(deep_or_strange, "flatmap_body")


def bad_input_class(case) -> str | None:
    """Which of the mixed-in classes of bad input `case` carries, if any."""
    query = case.query or {}
    if any(str(query.get(name)) in MALFORMED_NUMBERS for name in ("limit", "offset")):
        return "malformed paging number"
    body = case.body if isinstance(case.body, dict) else {}
    if body.get("spec") in (nested(65), nested(200)):
        return "deep body"
    if body.get("grant_type") == EXCHANGE["grant_type"] and body.get("subject_token") in {
            exchange_with_issuer(issuer)["subject_token"] for issuer in STRANGE_ISSUERS}:
        return "token exchange claim"
    return None


@contextlib.contextmanager
def fuzzed_admin(pg_cluster) -> Iterator[FuzzedAdmin]:
    """An admin server (and the boot path it relays) on a database of its own, seeded."""
    dsn = asyncio.run(create_database(pg_cluster))
    # The routes that relay the boot path's answers (BSS bootscript, cloud-init impersonation) ask a real one.
    boot = ServiceServer(dsn).start()
    # The fuzzer's refused token requests would soon be answered 429 (tests/security covers that); it should
    # reach the token endpoint's logic instead.
    server = ServiceServer(dsn, service="admin", CHAMICORE_TOKEN_FAILURES_PER_CLIENT="1000000",
                           CHAMICORE_TOKEN_FAILURES_PER_ADDRESS="1000000", CHAMICORE_BOOT_URL=boot.url)
    try:
        server.start()
        admin = FuzzedAdmin(server, dsn)
        admin.seed_once()
        yield admin
    finally:
        server.stop()
        boot.stop()


def schema_of(admin: FuzzedAdmin):
    schema = schemathesis.openapi.from_url(f"{admin.server.url}/api/openapi.json")
    status, raw = admin.request("GET", "/api/openapi.json")
    paging = {f"{method.upper()} {path}" for path, item in raw["paths"].items() for method, entry in item.items()
              if any(p["name"] in ("limit", "offset") for p in entry.get("parameters", []))}
    mix_in_bad_input_classes(schema, paging)
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]  # a body over the size cap is refused too
    return schema


@pytest.fixture(scope="module")
def fuzz_admin(pg_cluster):
    with fuzzed_admin(pg_cluster) as admin:
        yield admin


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_admin):
    return schema_of(fuzz_admin)


@pytest.fixture(scope="module")
def sequences_admin(pg_cluster):
    """The stateful sequences get a server of their own, starting from the seed alone: what the stateless
    cases left behind would make the same sequence meet other answers, which Hypothesis rightly calls flaky
    generation (a link's bundle empty in one run and not in another)."""
    with fuzzed_admin(pg_cluster) as admin:
        yield admin


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors_and_answers_match_the_schema(case, fuzz_admin):
    ran.add("stateless")
    use_seeded_ids(case)
    if kind := bad_input_class(case):
        mixed_in[kind] += 1
    # A case whose headers are the invalid part (no Authorization) is sent as generated.
    negative_headers = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    headers = {} if negative_headers else {"Authorization": f"Bearer {fuzz_admin.token}"}
    response = case.call(headers=headers)
    fuzz_admin.after(case.method, case.operation.path, response.status_code)
    case.validate_response(response, excluded_checks=EXCLUDED_CHECKS, headers=headers)


def test_stateful_sequences_follow_the_links(sequences_admin):
    fuzz_admin = sequences_admin

    class Sequences(schema_of(sequences_admin).as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case):
            return {"headers": {"Authorization": f"Bearer {fuzz_admin.token}"}}

        def after_call(self, response, case):
            super().after_call(response, case)
            fuzz_admin.after(case.method, case.operation.path, response.status_code)

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, excluded_checks=EXCLUDED_CHECKS, transport_kwargs=kwargs or None,
                                   recorder=getattr(self, "recorder", None))

    Sequences.run(settings=settings(max_examples=SCENARIOS, stateful_step_count=STEPS, deadline=None,
                                    suppress_health_check=list(HealthCheck), derandomize=True))


def test_every_operation_was_reached(fuzz_schema):
    if "stateless" not in ran:
        pytest.skip("counts what the stateless fuzz test above reached; run it too")
    operations = [f"{op.method.upper()} {op.path}" for op in (r.ok() for r in fuzz_schema.get_all_operations())]
    reached = [op for op in operations if set(answers[op]) - {404}]
    print(f"\nfuzzing reached {len(reached)} of {len(operations)} operations with an answer other than 404; "
          f"{sum(1 for op in operations if any(s < 300 for s in answers[op]))} answered 2xx at least once "
          f"({sum(sum(c.values()) for c in answers.values())} requests)")
    print(f"bad input classes mixed in: {dict(mixed_in)}")
    missed = {op: dict(answers[op]) for op in operations if op not in reached}
    assert not missed, missed
    assert set(mixed_in) == {"malformed paging number", "deep body", "token exchange claim"}, mixed_in
