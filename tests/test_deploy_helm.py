"""deploy/helm/chamicore rendered by Helm's own engine (helm-python-sdk, offline) in the combinations that matter."""

import base64
import urllib.parse

import pytest
import yaml
from helm_python import HelmRenderError
from helm_python.chart import Chart

from core.config import SETTINGS, load_config
from tests.helpers.paths import ROOT

CHART = ROOT / "deploy" / "helm" / "chamicore"
EXTERNAL = {"database": {"url": "postgresql://chamicore:pw@db.cluster/chamicore"}}
KNOWN = {f"CHAMICORE_{s.name}" for s in SETTINGS}


def render(values: dict, name: str = "hpc") -> list[dict]:
    with Chart.load(CHART) as chart:
        manifests = chart.render(values=values, name=name, namespace="cluster")
    return [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]


def one(docs, kind, suffix=""):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, (kind, suffix, [d["metadata"]["name"] for d in found])
    return found[0]


def environment(docs) -> dict[str, str]:
    """What a pod sees through envFrom: the ConfigMap and the Secrets, decoded."""
    env = dict(one(docs, "ConfigMap")["data"])
    for secret in (d for d in docs if d["kind"] == "Secret"):
        env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    return env


def test_without_a_database_the_chart_says_what_to_set():
    with pytest.raises(HelmRenderError, match="set database.url, database.existingSecret or postgresql.bundled"):
        render({})


def test_external_services_with_ingress():
    docs = render({**EXTERNAL, "nats": {"url": "nats://nats.cluster:4222"}, "kea": {"url": "http://kea:8000"},
                   "ingress": {"enabled": True, "host": "boot.cluster", "className": "nginx",
                               "tls": [{"secretName": "tls", "hosts": ["boot.cluster"]}]},
                   "config": {"extra": {"CHAMICORE_UNKNOWN_RETRY_S": "5"}}})
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ConfigMap", "Secret", "Secret", "Deployment", "Deployment", "Deployment", "Service",
                            "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress"])
    env = environment(docs)
    assert set(env) <= KNOWN  # nothing the code would not read
    config = load_config({k: v for k, v in env.items()})  # the code accepts every value as rendered
    assert config.nats_url == "nats://nats.cluster:4222" and config.kea_url == "http://kea:8000"
    assert config.issuer == "https://boot.cluster" and config.unknown_retry_s == 5
    assert len(env["CHAMICORE_SECRET_KEY"]) == 48 and env["CHAMICORE_SECRET_KEY"] != env["CHAMICORE_CREDENTIALS_KEY"]

    ingress = one(docs, "Ingress")
    routes = {p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert routes == {"/boot/v1/bootscript": "hpc-chamicore-boot", "/boot/v1/boot.ipxe": "hpc-chamicore-boot",
                      "/cloud-init": "hpc-chamicore-boot", "/cloud-init/payloads": "hpc-chamicore-admin",
                      "/": "hpc-chamicore-admin"}
    assert ingress["spec"]["ingressClassName"] == "nginx"


def test_deployments_agree_with_the_code():
    docs = render(EXTERNAL)
    config = load_config(environment(docs))
    listen = {"boot": config.boot_listen.port, "admin": config.admin_listen.port}
    for component in ("boot", "admin", "sync"):
        deployment = one(docs, "Deployment", f"-{component}")
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["args"] == ["serve", component]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        refs = [e.get("configMapRef", e.get("secretRef"))["name"] for e in container["envFrom"]]
        assert refs == ["hpc-chamicore", "hpc-chamicore-secrets", "hpc-chamicore-database"]
        if component == "sync":
            continue
        [port] = container["ports"]
        assert port["containerPort"] == listen[component]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readiness", "port": "http"}
        service = one(docs, "Service", f"-{component}")
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # The chart's defaults are the code's defaults.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    defaults = load_config({})
    assert values["boot"]["port"] == defaults.boot_listen.port
    assert values["admin"]["port"] == defaults.admin_listen.port
    assert values["boot"]["maxConnections"] == defaults.boot_max_connections
    assert one(docs, "Deployment", "-admin")["spec"]["template"]["spec"]["initContainers"][0]["args"] == \
        ["db", "migrate"]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "hpc-chamicore-boot"
    assert "replicas" not in one(docs, "Deployment", "-boot")["spec"]  # the autoscaler owns it
    assert one(docs, "Deployment", "-sync")["spec"]["replicas"] == 2  # a standby for fail-over


def test_bundled_postgresql_and_nats():
    docs = render({"postgresql": {"bundled": True}, "nats": {"bundled": True}})
    statefulset = one(docs, "StatefulSet", "-postgresql")
    env = environment(docs)
    url = urllib.parse.urlsplit(env["CHAMICORE_DATABASE_URL"])
    assert url.hostname == "hpc-chamicore-postgresql" and url.port == 5432
    assert urllib.parse.unquote(url.password) == env["POSTGRES_PASSWORD"] and len(env["POSTGRES_PASSWORD"]) == 32
    password_ref = next(e for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
                        if e["name"] == "POSTGRES_PASSWORD")
    assert password_ref["valueFrom"]["secretKeyRef"] == {"name": "hpc-chamicore-database", "key": "POSTGRES_PASSWORD"}
    assert env["CHAMICORE_NATS_URL"] == "nats://hpc-chamicore-nats:4222"
    assert one(docs, "Service", "-nats")["spec"]["ports"][0]["port"] == 4222
    load_config({k: v for k, v in env.items() if k in KNOWN})


def test_fixed_replicas_existing_secrets_and_no_disruption_budget():
    docs = render({"database": {"existingSecret": "db-url"}, "secrets": {"existingSecret": "keys"},
                   "boot": {"autoscaling": {"enabled": False}, "replicas": 3,
                            "podDisruptionBudget": {"enabled": False}}})
    assert not [d for d in docs if d["kind"] in ("Secret", "HorizontalPodAutoscaler", "PodDisruptionBudget")]
    boot = one(docs, "Deployment", "-boot")
    assert boot["spec"]["replicas"] == 3
    refs = [e.get("configMapRef", e.get("secretRef"))["name"]
            for e in boot["spec"]["template"]["spec"]["containers"][0]["envFrom"]]
    assert refs == ["hpc-chamicore", "keys", "db-url"]


def test_given_keys_are_used_and_generated_ones_differ_per_install():
    given = environment(render({**EXTERNAL, "secrets": {"secretKey": "s" * 40, "credentialsKey": "c" * 40}}))
    assert given["CHAMICORE_SECRET_KEY"] == "s" * 40 and given["CHAMICORE_CREDENTIALS_KEY"] == "c" * 40
    first, second = environment(render(EXTERNAL)), environment(render(EXTERNAL))
    assert first["CHAMICORE_SECRET_KEY"] != second["CHAMICORE_SECRET_KEY"]


def test_metrics_annotations_and_service_monitor():
    """The Services carry prometheus.io/* by default; the ServiceMonitors come only when asked for, select
    exactly their own Service and name the jobs the shipped alert rules use."""
    docs = render(EXTERNAL)
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]
    for component, port in (("boot", "27778"), ("admin", "27779")):
        annotations = one(docs, "Service", f"-{component}")["metadata"]["annotations"]
        assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": port,
                               "prometheus.io/path": "/metrics"}
    quiet = render({**EXTERNAL, "metrics": {"annotations": False}})
    assert "annotations" not in one(quiet, "Service", "-boot")["metadata"]

    docs = render({**EXTERNAL, "metrics": {"serviceMonitor": {"enabled": True, "interval": "10s",
                                                              "labels": {"release": "kube-prometheus-stack"}}}})
    rules = (ROOT / "deploy" / "prometheus" / "rules" / "chamicore.rules.yml").read_text()
    services = [d for d in docs if d["kind"] == "Service"]
    for component in ("boot", "admin"):
        monitor = one(docs, "ServiceMonitor", f"-{component}")
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [s["metadata"]["name"] for s in services
                    if selector.items() <= s["metadata"]["labels"].items()]
        assert selected == [f"hpc-chamicore-{component}"]
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["cluster"]}
        [endpoint] = monitor["spec"]["endpoints"]
        service_ports = [p["name"] for p in one(docs, "Service", f"-{component}")["spec"]["ports"]]
        assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics" and endpoint["interval"] == "10s"
        [relabel] = endpoint["relabelings"]
        assert relabel == {"targetLabel": "job", "replacement": f"chamicore-{component}"}
        assert f'job="chamicore-{component}"' in rules


def test_ha_example_boot_replicas_postgresql_hosts_and_a_nats_cluster():
    """deploy/helm/examples/ha-values.yaml: what tests/reliability showed each part needs to fail over."""
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "examples" / "ha-values.yaml").read_text())
    docs = render(values)
    env = environment(docs)
    config = load_config(env)
    # The multi-host DSN reaches the code as written: the client picks the writable host of those named.
    assert config.database_url == values["database"]["url"]
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(config.database_url).query) == \
        {"target_session_attrs": ["read-write"]}
    assert config.nats_url == ",".join(values["nats"]["servers"]) and config.nats_stream_replicas == 3
    assert not [d for d in docs if d["metadata"]["name"].endswith("-nats")]  # nothing bundled

    boot = one(docs, "Deployment", "-boot")
    assert boot["spec"]["replicas"] == 3
    # A rollout never has fewer ready replicas than asked: a new one must load every node (/readiness) first.
    assert boot["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = boot["spec"]["template"]["spec"]
    assert pod["containers"][0]["readinessProbe"] == {"httpGet": {"path": "/readiness", "port": "http"},
                                                       "periodSeconds": 2, "failureThreshold": 2}
    [spread] = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"] == boot["spec"]["selector"]["matchLabels"]
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    assert one(docs, "Deployment", "-sync")["spec"]["replicas"] == 2


def test_nats_cluster_url_forms_and_replicas():
    servers = ["nats://n0:4222", "nats://n1:4222", "nats://n2:4222"]
    as_list = environment(render({**EXTERNAL, "nats": {"servers": servers, "streamReplicas": 3}}))
    as_url = environment(render({**EXTERNAL, "nats": {"url": ",".join(servers), "streamReplicas": 3}}))
    assert as_list["CHAMICORE_NATS_URL"] == as_url["CHAMICORE_NATS_URL"] == ",".join(servers)
    assert load_config(as_list).nats_stream_replicas == 3
    no_nats = environment(render(EXTERNAL))
    assert "CHAMICORE_NATS_URL" not in no_nats and "CHAMICORE_NATS_STREAM_REPLICAS" not in no_nats
    assert environment(render({**EXTERNAL, "nats": {"bundled": True}}))["CHAMICORE_NATS_STREAM_REPLICAS"] == "1"
    with pytest.raises(HelmRenderError, match="nats.bundled is one NATS server"):
        render({**EXTERNAL, "nats": {"bundled": True, "streamReplicas": 3}})
    boot = one(render({**EXTERNAL, "boot": {"spreadAcrossNodes": False}}), "Deployment", "-boot")
    assert "topologySpreadConstraints" not in boot["spec"]["template"]["spec"]
