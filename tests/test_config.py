import pytest

from core.config import SETTINGS, ConfigError, describe, load_config


def test_defaults_are_documented_and_valid():
    config = load_config({})
    assert str(config.boot_listen) == "127.0.0.1:27778"
    assert str(config.admin_listen) == "127.0.0.1:27779"
    assert config.database_url is None and config.boot_url is None
    assert config.dev_mode is False
    assert config.unknown_retry_s == 10
    assert all(setting.doc for setting in SETTINGS)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("BOOT_LISTEN", "nonsense", "host:port"),
        ("ADMIN_LISTEN", "127.0.0.1:99999", "host:port"),
        ("DATABASE_URL", "mysql://x", "postgresql"),
        ("UNKNOWN_RETRY_S", "-3", "positive"),
        ("UNKNOWN_RETRY_S", "soon", "soon"),
        ("DEV_MODE", "maybe", "true or false"),
        ("TRUSTED_PROXIES", "10.0.0.0/33", "10.0.0.0/33"),
        ("BOOT_INTERFACE", "wsgi", "rsgi"),
        ("BOOT_URL", "ftp://x", "http"),
    ],
)
def test_bad_setting_is_named(name, value, fragment):
    with pytest.raises(ConfigError) as info:
        load_config({f"CHAMICORE_{name}": value})
    assert info.value.name == f"CHAMICORE_{name}"
    assert str(info.value).startswith(f"CHAMICORE_{name}:")
    assert fragment in str(info.value)


def test_cross_setting_check():
    with pytest.raises(ConfigError, match="CHAMICORE_RETRY_BASE_S"):
        load_config({"CHAMICORE_RETRY_BASE_S": "100", "CHAMICORE_RETRY_MAX_S": "10"})


def test_values_are_parsed():
    config = load_config({
        "CHAMICORE_DEV_MODE": "TRUE",
        "CHAMICORE_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16",
        "CHAMICORE_BOOT_URL": "http://boot.example:8080/",
        "CHAMICORE_BOOT_LISTEN": "[::1]:9000",
    })
    assert config.dev_mode is True
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.1/32", "192.168.0.0/16"]
    assert config.boot_url == "http://boot.example:8080"
    assert (config.boot_listen.host, config.boot_listen.port) == ("::1", 9000)


def test_describe_masks_secrets():
    config = load_config({
        "CHAMICORE_DATABASE_URL": "postgresql://admin:hunter2@db:5432/chamicore",
        "CHAMICORE_SECRET_KEY": "topsecret",
        "CHAMICORE_CREDENTIALS_KEY": "alsosecret",
    })
    shown = {name: value for name, value, _ in describe(config)}
    text = repr(shown)
    assert "hunter2" not in text and "topsecret" not in text and "alsosecret" not in text
    assert shown["CHAMICORE_DATABASE_URL"] == "postgresql://admin:****@db:5432/chamicore"
    assert shown["CHAMICORE_SECRET_KEY"] == "****"
    assert shown["CHAMICORE_NATS_URL"] == "(unset)"


def test_listen_addresses_become_urls_in_one_place():
    wildcard = load_config({"CHAMICORE_BOOT_LISTEN": "0.0.0.0:8080", "CHAMICORE_ADMIN_LISTEN": "[::]:9090"})
    assert wildcard.boot_listen.local_url == "http://127.0.0.1:8080"
    assert wildcard.token_issuer == "http://127.0.0.1:9090"
    assert wildcard.node_boot_url is None  # no node can be sent to 0.0.0.0
    one = load_config({"CHAMICORE_BOOT_LISTEN": "[fd00::5]:8080"})
    assert one.node_boot_url == "http://[fd00::5]:8080"
    chosen = load_config({"CHAMICORE_BOOT_LISTEN": "0.0.0.0:8080", "CHAMICORE_BOOT_URL": "http://10.1.0.1:8080/"})
    assert chosen.node_boot_url == "http://10.1.0.1:8080"


def test_kea_sync_refuses_a_wildcard_boot_address_without_a_boot_url():
    from sync.runner import enabled_jobs

    env = {"CHAMICORE_DATABASE_URL": "postgresql://x@127.0.0.1/x", "CHAMICORE_KEA_URL": "http://127.0.0.1:8000",
           "CHAMICORE_BOOT_LISTEN": "0.0.0.0:27778"}
    with pytest.raises(ConfigError) as refused:
        enabled_jobs(load_config(env))
    assert refused.value.name == "CHAMICORE_BOOT_URL"
    [kea] = [job for job in enabled_jobs(load_config({**env, "CHAMICORE_BOOT_URL": "http://10.1.0.1:27778"}))
             if type(job).__name__ == "KeaSync"]
    assert kea.boot_url == "http://10.1.0.1:27778"


def test_a_nats_cluster_is_a_list_of_urls_each_checked():
    config = load_config({"CHAMICORE_NATS_URL": "nats://a:4222, tls://user:pw@b:4222/ ,nats://c:4222",
                          "CHAMICORE_NATS_STREAM_REPLICAS": "3"})
    assert config.nats_url == "nats://a:4222,tls://user:pw@b:4222,nats://c:4222"
    assert config.nats_stream_replicas == 3 and load_config({}).nats_stream_replicas == 1
    shown = {name: value for name, value, _ in describe(config)}
    assert shown["CHAMICORE_NATS_URL"] == "nats://a:4222,tls://user:****@b:4222,nats://c:4222"
    for bad in ("nats://a:4222,http://b:4222", "nats://a:4222,,nats://c:4222", "nats://a:4222,", "a:4222"):
        with pytest.raises(ConfigError, match="CHAMICORE_NATS_URL: expected a nats or tls URL"):
            load_config({"CHAMICORE_NATS_URL": bad})
    for bad in ("0", "6", "three"):
        with pytest.raises(ConfigError, match="CHAMICORE_NATS_STREAM_REPLICAS"):
            load_config({"CHAMICORE_NATS_STREAM_REPLICAS": bad})
