from __future__ import annotations

from pathlib import Path

import pytest

from lammps_stream.config import Config, dump_config, known_keys, load_config
from lammps_stream.errors import ConfigError


def test_defaults_match_the_contract() -> None:
    cfg = load_config(path=None, env={})
    assert cfg.kafka.bootstrap == "127.0.0.1:9092"
    assert cfg.service.url == "http://127.0.0.1:6066"
    assert cfg.kafka.topics.runs == "lammps.runs"
    assert cfg.kafka.topics.dlq == "lammps.dlq"


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "lammps-stream.yaml"
    path.write_text("kafka:\n  partitions: 4\n  bootstrap: h:1\nservice:\n  http_port: 7000\n")
    env = {"LAMMPS_STREAM_KAFKA_PARTITIONS": "5", "LAMMPS_STREAM_KAFKA_TOPICS_RUNS": "my.runs"}
    cfg = load_config(path, env=env, overrides={"kafka.bootstrap": "h:2"})
    assert cfg.kafka.partitions == 5
    assert cfg.kafka.bootstrap == "h:2"
    assert cfg.service.http_port == 7000
    assert cfg.kafka.topics.runs == "my.runs"


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("producer:\n  np: 4\n")
    assert load_config(env={"LAMMPS_STREAM_CONFIG": str(path)}).producer.np == 4


def test_every_key_has_an_environment_variable() -> None:
    for key in known_keys():
        name = "LAMMPS_STREAM_" + key.replace(".", "_").upper()
        cfg = load_config(path=None, env={name: _default_text(key)})
        assert cfg == Config(), key


def _default_text(key: str) -> str:
    node = Config()
    for part in key.split("."):
        node = getattr(node, part)
    if isinstance(node, list):
        return "[" + ", ".join(str(v) for v in node) + "]"
    return str(node).lower() if isinstance(node, bool) else str(node)


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = load_config(path=None, env={}, overrides={"kafka.partitions": 7})
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path, env={}) == cfg


def test_a_time_limit_is_read_as_slurm_means_it(tmp_path: Path) -> None:
    # YAML 1.1 reads 30:00 unquoted as the base-60 number 1800: 30 hours to Slurm
    path = tmp_path / "c.yaml"
    path.write_text("producer:\n  time_limit: 30:00\n  timeout_seconds: 1:00\n")
    with pytest.raises(ConfigError, match=r"producer\.timeout_seconds: expected a number"):
        load_config(path, env={})
    path.write_text("producer:\n  time_limit: 30:00\n")
    assert load_config(path, env={}).producer.time_limit == "30:00"
    overrides = {"producer.time_limit": "1:30:00"}
    assert load_config(path=None, env={}, overrides=overrides).producer.time_limit == "1:30:00"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kafka:\n  partitions: 0\n", "kafka.partitions: must be between 1 and 1000, got 0"),
        ("kafka:\n  partitions: lots\n", "kafka.partitions: expected an integer, got 'lots'"),
        ("kafka:\n  bootstrap: nohost\n", "kafka.bootstrap: expected host:port"),
        ("kafka:\n  partitons: 3\n", "kafka.partitons: unknown key; allowed here:"),
        ("servce: {}\n", "servce: unknown key"),
        ("producer:\n  x: [3, 1]\n", "producer.x: expected [low, high]"),
        ("service:\n  models: []\n", "service.models: list at least one model"),
        ("- just\n- a list\n", "expected a mapping of sections"),
        ("kafka: [\n", "not valid YAML"),
        ("producer:\n  time_limit: half an hour\n", "producer.time_limit (--time): expected"),
        ("producer:\n  time_limit: '0:00'\n", "a time limit must be more than zero"),
    ],
)
def test_invalid_file_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        load_config(path, env={})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_environment_variable_is_refused() -> None:
    with pytest.raises(ConfigError, match="LAMMPS_STREAM_KAFKA_BOOTSTRAPP: no such setting"):
        load_config(path=None, env={"LAMMPS_STREAM_KAFKA_BOOTSTRAPP": "h:1"})


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.nope: not a setting"):
        load_config(path=None, env={}, overrides={"kafka.nope": "1"})


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("kafka.partiton", "kafka.partiton: not a setting; did you mean kafka.partitions?"),
        ("kafka.topics.run_s", "did you mean kafka.topics.runs?"),
        ("producer.frobnicate", "not a setting; the keys of producer are deck, np, threads,"),
        ("nope", "give section.key with section one of kafka, service, producer, stack"),
        ("kafka.topics.foo", "the keys of kafka.topics are runs, predictions, requests,"),
        ("kafak.partitions", "did you mean kafka.partitions?"),
    ],
)
def test_an_unknown_override_says_how_to_mend_it_on_one_short_line(key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(path=None, env={}, overrides={key: "1"})
    message = str(info.value)
    assert hint in message and "\n" not in message and len(message) < 400


def test_a_misspelt_environment_variable_names_the_one_meant() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(path=None, env={"LAMMPS_STREAM_KAFKA_PARTITON": "3"})
    assert str(info.value) == (
        "LAMMPS_STREAM_KAFKA_PARTITON: no such setting; "
        "did you mean LAMMPS_STREAM_KAFKA_PARTITIONS?"
    )


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", env={})


def test_sasl_needs_a_login() -> None:
    with pytest.raises(ConfigError, match="both are needed"):
        load_config(path=None, env={"LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    cfg = load_config(
        path=None,
        env={
            "LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "LAMMPS_STREAM_KAFKA_SASL_USERNAME": "alice",
            "LAMMPS_STREAM_KAFKA_SASL_PASSWORD": "pw",
        },
    )
    assert cfg.kafka.sasl and cfg.kafka.sasl_mechanism == "SCRAM-SHA-512"
    with pytest.raises(ConfigError, match=r"kafka\.sasl_mechanism: must be one of"):
        load_config(path=None, env={"LAMMPS_STREAM_KAFKA_SASL_MECHANISM": "GSSAPI"})


@pytest.mark.parametrize("heap", ["768", "lots", "1.5g", "-1g", "0m"])
def test_a_heap_size_java_would_refuse_or_misread_is_one_line(heap: str) -> None:
    # It reached the broker's JVM as -Xmx768 (bytes), which failed the stack's start.
    with pytest.raises(ConfigError, match=r"kafka\.heap: .* e\.g\. 768m or 2g"):
        load_config(path=None, env={"LAMMPS_STREAM_KAFKA_HEAP": heap})
    assert load_config(path=None, env={"LAMMPS_STREAM_KAFKA_HEAP": "2g"}).kafka.heap == "2g"


def test_tls_settings_from_the_environment(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = load_config(
        path=None,
        env={
            "LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": "SSL",
            "LAMMPS_STREAM_KAFKA_SSL_CAFILE": str(ca),
            "LAMMPS_STREAM_KAFKA_SSL_CHECK_HOSTNAME": "false",
        },
    )
    assert cfg.kafka.tls and not cfg.kafka.sasl and not cfg.kafka.ssl_check_hostname
    assert cfg.kafka.tls_files() == {"ssl_cafile": ca}
    both = load_config(
        path=None,
        env={
            "LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LAMMPS_STREAM_KAFKA_SASL_USERNAME": "alice",
            "LAMMPS_STREAM_KAFKA_SASL_PASSWORD": "pw",
        },
    )
    assert both.kafka.tls and both.kafka.sasl and both.kafka.ssl_check_hostname
    assert both.kafka.tls_files() == {}  # the system's CAs


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECURITY_PROTOCOL": "TLS"}, "kafka.security_protocol: must be one of PLAINTEXT, "),
        ({"SECURITY_PROTOCOL": "SASL_SSL"}, "kafka.security_protocol SASL_SSL (e.g. LAMMPS_"),
        ({"SSL_CAFILE": "ca.crt"}, "kafka.ssl_cafile: set, but kafka.security_protocol PLAINTEXT"),
        (
            {"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_USERNAME": "a", "SASL_PASSWORD": "b"}
            | {"SSL_CERTFILE": "c.crt"},
            "kafka.ssl_certfile: set, but kafka.security_protocol SASL_PLAINTEXT does not use TLS",
        ),
        (
            {"SECURITY_PROTOCOL": "SSL", "SSL_KEYFILE": "c.key"},
            "kafka.ssl_keyfile: a client key needs its certificate; set kafka.ssl_certfile",
        ),
        ({"SSL_CHECK_HOSTNAME": "maybe"}, "kafka.ssl_check_hostname: expected true or false"),
    ],
)
def test_invalid_tls_settings_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(path=None, env={f"LAMMPS_STREAM_KAFKA_{k}": v for k, v in env.items()})
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("key", ["ssl_cafile", "ssl_certfile", "ssl_keyfile"])
def test_a_tls_file_that_does_not_exist_is_refused_when_used(tmp_path: Path, key: str) -> None:
    cert = tmp_path / "client.crt"
    cert.write_text("")
    settings = {"security_protocol": "SSL", "ssl_certfile": str(cert)} | {
        key: str(tmp_path / "missing.pem")
    }
    cfg = load_config(path=None, env={}, overrides={f"kafka.{k}": v for k, v in settings.items()})
    with pytest.raises(ConfigError) as info:
        cfg.kafka.tls_files()  # loading succeeded: files are checked where clients are made
    assert str(info.value).startswith(f"kafka.{key}: {tmp_path / 'missing.pem'} does not exist; ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("secret", ["0123", "0x1F", "1.50", "1_000", "pa ss #x", "#hunter2", "yes"])
def test_a_secret_from_the_environment_is_taken_as_typed(secret: str) -> None:
    env = {
        "LAMMPS_STREAM_KAFKA_SASL_PASSWORD": secret,
        "LAMMPS_STREAM_SERVICE_API_TOKEN": secret,
        "LAMMPS_STREAM_SERVICE_SNAPSHOT_KEY": secret,
    }
    cfg = load_config(path=None, env=env)
    assert (cfg.kafka.sasl_password, cfg.service.api_token, cfg.service.snapshot_key) == (
        secret,
        secret,
        secret,
    )


def test_numbers_and_lists_from_the_command_line_are_read_by_their_settings_type() -> None:
    cfg = load_config(
        path=None,
        env={"LAMMPS_STREAM_SERVICE_HTTP_PORT": "7000"},
        overrides={"producer.x": "1,3", "producer.y": "[2, 4]", "kafka.partitions": "6"},
    )
    assert (cfg.service.http_port, cfg.producer.x, cfg.producer.y, cfg.kafka.partitions) == (
        7000,
        [1, 3],
        [2, 4],
        6,
    )
    with pytest.raises(ConfigError, match=r"kafka\.partitions: expected an integer, got 'six'"):
        load_config(path=None, env={}, overrides={"kafka.partitions": "six"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kafka:\n", None),  # an empty section, filled from the environment
        ("kafka: 5\n", "kafka: expected a mapping of settings, got 5"),
    ],
)
def test_a_section_the_environment_adds_to(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    env = {"LAMMPS_STREAM_KAFKA_BOOTSTRAP": "h:9"}
    if message is None:
        assert load_config(path, env=env).kafka.bootstrap == "h:9"
    else:
        with pytest.raises(ConfigError, match=message):
            load_config(path, env=env)


def test_a_file_that_is_not_utf8_text_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"kafka:\n  bootstrap: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path, env={})


def test_the_local_stack_refuses_more_copies_than_its_one_broker(tmp_path: Path) -> None:
    from lammps_stream.errors import StackError
    from lammps_stream.stack import LocalStack

    config = load_config(
        path=None,
        env={},
        overrides={"kafka.replication_factor": 3, "stack.state_dir": str(tmp_path / "stack")},
    )
    with pytest.raises(StackError, match="local stack is one broker"):
        LocalStack(config).up()
    assert not (tmp_path / "stack").exists()  # nothing started


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "is not a Kafka topic name"),
        ("lammps runs", "is not a Kafka topic name"),
        ("x" * 250, "is not a Kafka topic name"),
        ("lammps.predictions", "predictions: .lammps.predictions. is kafka.topics.runs already"),
    ],
)
def test_topic_names_kafka_would_refuse_or_two_roles_share_are_refused(
    name: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(path=None, env={"LAMMPS_STREAM_KAFKA_TOPICS_RUNS": name})


def test_values_from_the_environment_in_yaml_block_form_or_with_blanks_around_them() -> None:
    cfg = load_config(
        path=None,
        env={
            "LAMMPS_STREAM_SERVICE_MODELS": "- linear\n- pa",
            "LAMMPS_STREAM_PRODUCER_X": "- 1\n- 3",
            "LAMMPS_STREAM_KAFKA_SASL_PASSWORD": " s3cret\n",  # a Secret made from a file
        },
    )
    assert (cfg.service.models, cfg.producer.x, cfg.kafka.sasl_password) == (
        ["linear", "pa"],
        [1, 3],
        "s3cret",
    )
    odd = load_config(path=None, env={"LAMMPS_STREAM_SERVICE_MODELS": "linear,@x"})
    assert "- '@x'" in dump_config(odd)  # plain text all the way: it can be written back


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "kafka:\n  sasl_password: 0123\n",
            "kafka.sasl_password in {path}: a number (83) where text is wanted; "
            'quote it: sasl_password: "0123"',
        ),
        (
            "service:\n  api_token: 0x1F\n",
            "service.api_token in {path}: a number (31) where text is wanted; "
            'quote it: api_token: "0x1F"',
        ),
        (
            "service:\n  snapshot_key: 1.50\n",
            "service.snapshot_key in {path}: a number (1.5) where text is wanted; "
            'quote it: snapshot_key: "1.50"',
        ),
        (
            "service:\n  instance_id: 1_000\n",
            "service.instance_id in {path}: a number (1000) where text is wanted; "
            'quote it: instance_id: "1_000"',
        ),
        (
            "kafka:\n  version: 4.10\n",
            "kafka.version in {path}: a number (4.1) where text is wanted; "
            'quote it: version: "4.10"',
        ),
        (
            "kafka:\n  sasl_username: yes\n",
            "kafka.sasl_username in {path}: true or false (True) where text is wanted; "
            'quote it: sasl_username: "yes"',
        ),
        (
            "producer:\n  partition: 2026-01-01\n",
            "producer.partition in {path}: a date (2026-01-01) where text is wanted; "
            'quote it: partition: "2026-01-01"',
        ),
        (
            "service:\n  suggest_committee: [bayes_log, 007]\n",
            "service.suggest_committee[1] in {path}: a number (7) where text is wanted; "
            'quote it: "007"',
        ),
        (
            "kafka:\n  topics:\n    dlq: 0777\n",
            "kafka.topics.dlq in {path}: a number (511) where text is wanted; "
            'quote it: dlq: "0777"',
        ),
        (
            "kafka:\n  ssl_cafile:\n",
            "kafka.ssl_cafile in {path}: nothing where text is wanted; "
            'write ssl_cafile: "" to leave it empty, or the text in quotes',
        ),
    ],
)
def test_a_text_setting_that_yaml_reads_as_something_else_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    """YAML 1.1 reads an unquoted 0123 as 83: a secret that changed silently would fail
    only at the broker's login, so the file is refused, saying how to quote it."""
    path = tmp_path / "lammps-stream.yaml"
    assert _file_refused(path, text) == message.format(path=path)


def _file_refused(path: Path, text: str) -> str:
    """The one line a config file of ``text`` at ``path`` is refused with."""
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    return str(info.value)


def test_a_number_in_a_text_setting_that_reads_back_as_written_is_taken(tmp_path: Path) -> None:
    """A time limit in minutes, a partition or an instance id given as a plain number is
    the text that was typed: nothing changes, so nothing is refused."""
    path = tmp_path / "lammps-stream.yaml"
    path.write_text(
        "kafka:\n  version: 3.9\n  sasl_password: '0123'\n"
        'service:\n  instance_id: 3\n  api_token: "0x1F"\n'
        "producer:\n  time_limit: 45\n  partition: 7\n"
    )
    cfg = load_config(path, env={})
    assert (cfg.kafka.version, cfg.kafka.sasl_password) == ("3.9", "0123")
    assert (cfg.service.instance_id, cfg.service.api_token) == ("3", "0x1F")
    assert (cfg.producer.time_limit, cfg.producer.partition) == ("45", "7")


def test_secrets_that_look_like_numbers_survive_a_written_config(tmp_path: Path) -> None:
    from lammps_stream.config import write_config

    env = {
        "LAMMPS_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "LAMMPS_STREAM_KAFKA_SASL_USERNAME": "007",
        "LAMMPS_STREAM_KAFKA_SASL_PASSWORD": "0123",
        "LAMMPS_STREAM_SERVICE_API_TOKEN": "1_000",
        "LAMMPS_STREAM_SERVICE_SNAPSHOT_KEY": "1.50",
    }
    cfg = load_config(path=None, env=env)
    path = write_config(cfg, tmp_path / "lammps-stream.yaml")
    assert load_config(path, env={}) == cfg


@pytest.mark.parametrize(
    "text",
    [
        "kafka:\n",  # every key of the section commented out
        "kafka:\n  partitions: 3\n  topics:\n",
        "stack:\n  # state_dir: /scratch/stack\n",
    ],
)
def test_a_section_left_empty_in_the_file_keeps_its_defaults(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_config(path, env={}) == Config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "kafka:\n  bootstrap: h:1\nservice:\n  http_port: 7000\nkafka:\n  partitions: 6\n",
            "kafka in {path}: given twice (lines 1 and 5); the second would replace the first "
            "whole, so merge them into one",
        ),
        (
            "kafka:\n  partitions: 3\n  partitions: 6\n",
            "kafka.partitions in {path}: given twice (lines 2 and 3); the second would replace "
            "the first whole, so merge them into one",
        ),
        (
            "kafka:\n  topics:\n    runs: a\n    'runs': b\n",
            "kafka.topics.runs in {path}: given twice (lines 3 and 4); the second would replace "
            "the first whole, so merge them into one",
        ),
    ],
)
def test_a_key_given_twice_in_the_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    """YAML keeps the last of two equal keys: a second `kafka:` section silently put every
    key of the first back to its default."""
    path = tmp_path / "c.yaml"
    assert _file_refused(path, text) == message.format(path=path)


def test_a_merge_key_may_repeat_what_it_merges(tmp_path: Path) -> None:
    """`<<:` merges keys a mapping may then set again: that is no key given twice."""
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  <<: {partitions: 4, bootstrap: 'h:1'}\n  partitions: 6\n")
    cfg = load_config(path, env={})
    assert (cfg.kafka.partitions, cfg.kafka.bootstrap) == (6, "h:1")


@pytest.mark.parametrize("source", ["--config", "LAMMPS_STREAM_CONFIG"])
def test_a_config_path_that_is_a_directory_says_so(tmp_path: Path, source: str) -> None:
    if source == "--config":
        call = {"path": tmp_path, "env": {}}
    else:
        call = {"env": {"LAMMPS_STREAM_CONFIG": str(tmp_path)}}
    with pytest.raises(ConfigError) as info:
        load_config(**call)
    assert str(info.value) == (
        f"{source}: {tmp_path} is a directory; give the YAML file in it, "
        f"e.g. {tmp_path / 'lammps-stream.yaml'}"
    )


@pytest.mark.parametrize("text", ["2e-3", "2E-3", "+2e-3", "0.2e-2", "2_0e-4"])
def test_a_number_in_scientific_notation_is_a_number(tmp_path: Path, text: str) -> None:
    """YAML 1.1 wants a dot in a float's mantissa: 2e-3 was the text '2e-3', refused as
    'expected a number' from the file, the environment and --set alike."""
    path = tmp_path / "c.yaml"
    path.write_text(f"service:\n  batch_wait_seconds: {text}\n")
    assert load_config(path, env={}).service.batch_wait_seconds == 0.002
    env = {"LAMMPS_STREAM_SERVICE_BATCH_WAIT_SECONDS": text}
    assert load_config(path=None, env=env).service.batch_wait_seconds == 0.002
    overrides = {"service.batch_wait_seconds": text, "service.snapshot_seconds": "1e3"}
    service = load_config(path=None, env={}, overrides=overrides).service
    assert (service.batch_wait_seconds, service.snapshot_seconds) == (0.002, 1000)


def test_scientific_notation_for_a_whole_number_or_in_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kafka\.partitions: expected an integer, got 1000\.0"):
        load_config(path=None, env={"LAMMPS_STREAM_KAFKA_PARTITIONS": "1e3"})
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  version: 4e1\n")
    with pytest.raises(ConfigError, match=r"a number \(40\.0\) where text is wanted; quote it"):
        load_config(path, env={})


@pytest.mark.parametrize("host", ["", " ", "a b", "host/path", "127.0.0.1\n6067"])
def test_a_service_host_no_url_can_hold_is_refused(host: str) -> None:
    """``models list`` with ``http_host: 'a b'`` ended in http.client's traceback."""
    with pytest.raises(ConfigError) as info:
        load_config(path=None, env={}, overrides={"service.http_host": host})
    assert str(info.value) == (
        "service.http_host: expected a host name or address the model service listens on, "
        f"e.g. 127.0.0.1 or 0.0.0.0, got {host.strip()!r}"
    )


@pytest.mark.parametrize(
    "key", ["stack.state_dir", "stack.cache_dir", "producer.spool_dir", "producer.jobs_dir"]
)
def test_an_empty_directory_setting_is_refused(key: str) -> None:
    """An empty path is the working directory: the stack's state or the spool scattered
    over wherever the command happened to run."""
    default = getattr(getattr(Config(), key.split(".")[0]), key.split(".")[1])
    with pytest.raises(ConfigError) as info:
        load_config(path=None, env={}, overrides={key: " "})
    assert str(info.value) == f"{key}: give a directory (default {default}), not nothing"


@pytest.mark.parametrize(
    ("models", "name"),
    [
        ("[linear, pa, linear]", "linear"),
        ("[{name: t, class: river.tree.HoeffdingTreeRegressor}, {name: t, class: x.Y}]", "t"),
    ],
)
def test_a_model_named_twice_is_refused(models: str, name: str) -> None:
    """The service keeps one model per name: the second silently replaced the first."""
    with pytest.raises(ConfigError) as info:
        load_config(path=None, env={"LAMMPS_STREAM_SERVICE_MODELS": models})
    assert str(info.value) == (
        f"service.models: {name!r} is named twice; give each model a name of its own"
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            "kafka.topics",
            "kafka.topics: not a setting but a section; give kafka.topics.KEY=VALUE, "
            "KEY one of runs, predictions, requests, models, dlq, suggestions",
        ),
        (
            "stack",
            "stack: not a setting but a section; give stack.KEY=VALUE, KEY one of state_dir, "
            "cache_dir, start_service, start_timeout_seconds, authorizer",
        ),
        (
            "LAMMPS_STREAM_KAFKA_PARTITIONS",
            "LAMMPS_STREAM_KAFKA_PARTITIONS: not a setting but the environment variable of "
            "kafka.partitions; give --set kafka.partitions=VALUE",
        ),
    ],
)
def test_an_override_naming_a_section_or_a_variable_says_what_to_give(
    key: str, message: str
) -> None:
    """``--set kafka.topics=x`` was asked 'did you mean kafka.topics.dlq?'."""
    with pytest.raises(ConfigError) as info:
        load_config(path=None, env={}, overrides={key: "x"})
    assert str(info.value) == message
