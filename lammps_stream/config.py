"""One place for every setting: defaults, then ``lammps-stream.yaml``, then
``LAMMPS_STREAM_*`` environment variables, then command-line overrides.

Every key has a dotted name (``kafka.bootstrap``); its environment variable is the
name upper-cased with dots turned into underscores (``LAMMPS_STREAM_KAFKA_BOOTSTRAP``).

>>> cfg = load_config(env={}, path=None)
>>> cfg.kafka.bootstrap
'127.0.0.1:9092'
>>> load_config(env={"LAMMPS_STREAM_KAFKA_PARTITIONS": "6"}, path=None).kafka.partitions
6
>>> load_config(env={}, path=None, overrides={"service.http_port": "7000"}).service.http_port
7000
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import os
import re
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lammps_stream.errors import ConfigError

ENV_PREFIX = "LAMMPS_STREAM_"
CONFIG_ENV = "LAMMPS_STREAM_CONFIG"
# set by run-one for its ranks, not a setting: where a rank that aborts the job says why
ABORT_FILE_ENV = "LAMMPS_STREAM_ABORT_FILE"
DEFAULT_FILE = "lammps-stream.yaml"
TIME_LIMIT_FORMATS = "minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"  # as sbatch reads


_TOPIC_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


@dataclass(frozen=True)
class TopicsConfig:
    """Topic names; the contract's defaults."""

    runs: str = "lammps.runs"
    predictions: str = "lammps.predictions"
    requests: str = "lammps.requests"
    models: str = "lammps.models"
    dlq: str = "lammps.dlq"
    suggestions: str = "lammps.suggestions"

    def __post_init__(self) -> None:
        names: dict[str, str] = {}
        for role, name in dataclasses.asdict(self).items():
            key = f"kafka.topics.{role}"
            legal = name not in ("", ".", "..") and len(name) <= 249
            if not legal or name.strip(_TOPIC_CHARACTERS):
                raise ConfigError(
                    f"{key}: {name!r} is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"
                )
            if name in names:
                raise ConfigError(f"{key}: {name!r} is kafka.topics.{names[name]} already")
            names[name] = role


@dataclass(frozen=True)
class KafkaConfig:
    """Where the broker is, how clients reach it (login, TLS), and how the local stack runs one.

    >>> KafkaConfig(security_protocol="SSL").tls, KafkaConfig(security_protocol="SSL").sasl
    (True, False)
    >>> KafkaConfig(ssl_cafile="ca.crt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lammps_stream.errors.ConfigError: kafka.ssl_cafile: set, but ... does not use TLS; ...
    """

    bootstrap: str = "127.0.0.1:9092"
    controller_port: int = 9093
    partitions: int = 3
    runs_partitions: int = 1
    replication_factor: int = 1
    version: str = "4.1.1"
    heap: str = "768m"
    request_timeout_seconds: float = 10.0
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_check_hostname: bool = True
    topics: TopicsConfig = field(default_factory=TopicsConfig)

    def __post_init__(self) -> None:
        _check_host_port("kafka.bootstrap", self.bootstrap)
        _check_range("kafka.controller_port", self.controller_port, 1, 65535)
        _check_range("kafka.partitions", self.partitions, 1, 1000)
        _check_range("kafka.runs_partitions", self.runs_partitions, 1, 1000)
        _check_range("kafka.replication_factor", self.replication_factor, 1, 100)
        _check_range("kafka.request_timeout_seconds", self.request_timeout_seconds, 0.1, 600)
        _check_heap("kafka.heap", self.heap)
        _check_choice(
            "kafka.security_protocol",
            self.security_protocol,
            ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"),
        )
        _check_choice(
            "kafka.sasl_mechanism", self.sasl_mechanism, ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
        )
        if self.sasl and not (self.sasl_username and self.sasl_password):
            raise ConfigError(
                "kafka.sasl_username / kafka.sasl_password: both are needed with "
                f"kafka.security_protocol {self.security_protocol} "
                "(e.g. LAMMPS_STREAM_KAFKA_SASL_PASSWORD)"
            )
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, key) and not self.tls:
                raise ConfigError(
                    f"kafka.{key}: set, but kafka.security_protocol {self.security_protocol} "
                    "does not use TLS; set kafka.security_protocol to SSL or SASL_SSL, "
                    f"or leave kafka.{key} empty"
                )
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError(
                "kafka.ssl_keyfile: a client key needs its certificate; set kafka.ssl_certfile "
                "(PEM) too, or leave both empty when the broker does not ask for one"
            )

    @property
    def sasl(self) -> bool:
        """Whether clients authenticate with SASL."""
        return self.security_protocol.startswith("SASL")

    @property
    def tls(self) -> bool:
        """Whether clients speak TLS to the broker (SSL or SASL_SSL)."""
        return self.security_protocol.endswith("SSL")

    def tls_files(self) -> dict[str, Path]:
        """The TLS files that are set (``ssl_cafile``, ``ssl_certfile``, ``ssl_keyfile``),
        expanded; :class:`ConfigError` naming the key when one does not exist.

        Checked when a client is made, not when the configuration is read: a login node may
        prepare jobs whose certificates live only where the jobs run.

        >>> KafkaConfig(security_protocol="SSL").tls_files()
        {}
        >>> cfg = KafkaConfig(security_protocol="SSL", ssl_cafile="/nonexistent/ca.crt")
        >>> cfg.tls_files()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lammps_stream.errors.ConfigError: kafka.ssl_cafile: /nonexistent/ca.crt does not exist; ...
        """
        hints = {
            "ssl_cafile": "give the PEM file of the CA that signed the broker's certificate, "
            "or leave it empty to trust the system's CAs",
            "ssl_certfile": "give the PEM file of this client's certificate (mutual TLS), "
            "or leave it empty",
            "ssl_keyfile": "give the PEM file of this client's private key, or leave it empty "
            "when kafka.ssl_certfile holds the key too",
        }
        files = {}
        for key, hint in hints.items():
            value = getattr(self, key)
            if not value:
                continue
            path = expand(value)
            if not path.is_file():
                raise ConfigError(f"kafka.{key}: {path} does not exist; {hint}")
            files[key] = path
        return files


@dataclass(frozen=True)
class ServiceConfig:
    """The model service (Faust worker)."""

    app_id: str = "lammps-stream"
    http_host: str = "127.0.0.1"
    http_port: int = 6066
    models: list[Any] = field(
        default_factory=lambda: [
            "linear",
            "bayes_linear",
            "pa",
            "hoeffding_tree",
            "forest",
            "knn",
            "bayes_log",
        ]
    )
    interval_coverage: float = 0.9
    log_level: str = "info"
    snapshot_every: int = 2000
    snapshot_seconds: float = 60.0
    snapshot_key: str = ""
    batch_records: int = 500
    batch_wait_seconds: float = 0.002
    api_token: str = ""
    dedup_window: int = 100_000
    rolling_window: int = 100
    session_timeout_seconds: float = 30.0
    instance_id: str = ""
    suggest_every: int = 500
    suggest_seconds: float = 10.0
    suggest_count: int = 5
    suggest_alpha: float = 0.1
    suggest_ttl_seconds: float = 3600.0
    suggest_committee: list[str] = field(default_factory=lambda: ["bayes_log", "hoeffding_tree"])

    def __post_init__(self) -> None:
        if not self.http_host or re.search(r"[\s/?#@]", self.http_host):
            raise ConfigError(
                "service.http_host: expected a host name or address the model service listens "
                f"on, e.g. 127.0.0.1 or 0.0.0.0, got {self.http_host!r}"
            )
        _check_range("service.http_port", self.http_port, 1, 65535)
        _check_range("service.interval_coverage", self.interval_coverage, 0.5, 0.999)
        _check_range("service.snapshot_every", self.snapshot_every, 1, 10**9)
        _check_range("service.snapshot_seconds", self.snapshot_seconds, 1, 10**7)
        _check_range("service.batch_records", self.batch_records, 1, 100_000)
        _check_range("service.batch_wait_seconds", self.batch_wait_seconds, 0.0001, 10)
        _check_range("service.dedup_window", self.dedup_window, 0, 10**8)
        _check_range("service.rolling_window", self.rolling_window, 2, 10**6)
        _check_range("service.session_timeout_seconds", self.session_timeout_seconds, 6, 1800)
        _check_range("service.suggest_every", self.suggest_every, 0, 10**9)
        _check_range("service.suggest_count", self.suggest_count, 1, 1000)
        _check_range("service.suggest_seconds", self.suggest_seconds, 0.1, 10**7)
        _check_range("service.suggest_alpha", self.suggest_alpha, 0, 10)
        _check_range("service.suggest_ttl_seconds", self.suggest_ttl_seconds, 1, 10**8)
        if not self.models:
            raise ConfigError("service.models: list at least one model, e.g. [linear]")
        for item in self.models:
            if not isinstance(item, str) and not (isinstance(item, dict) and item.get("name")):
                raise ConfigError(
                    f"service.models: each entry is a built-in model's name or a mapping "
                    f"with name, class and params; got {item!r}"
                )
        names = self.model_names
        for name in names:
            if names.count(name) > 1:  # the service keeps one model per name
                raise ConfigError(
                    f"service.models: {name!r} is named twice; give each model a name of its own"
                )
        _check_choice("service.log_level", self.log_level, ("debug", "info", "warning", "error"))

    @property
    def model_names(self) -> list[str]:
        """The names of the configured models, in order.

        >>> ServiceConfig(models=["pa", {"name": "tree", "class": "river.tree.X"}]).model_names
        ['pa', 'tree']
        """
        return [item if isinstance(item, str) else str(item["name"]) for item in self.models]

    @property
    def url(self) -> str:
        """Base URL of the worker's web port."""
        return f"http://{self.http_host}:{self.http_port}"


@dataclass(frozen=True)
class ProducerConfig:
    """How runs are launched and sampled."""

    deck: str = "lj"
    np: int = 2
    threads: int = 1
    x: list[int] = field(default_factory=lambda: [1, 3])
    y: list[int] = field(default_factory=lambda: [1, 2])
    z: list[int] = field(default_factory=lambda: [1, 2])
    steps: int = 0
    space: str = ""
    sampler: str = "random"
    mpiexec: str = ""
    timeout_seconds: float = 900.0
    spool_dir: str = "~/.local/state/lammps-stream/spool"
    pushgateway: str = ""
    jobs_dir: str = "~/.local/state/lammps-stream/jobs"
    launcher: str = "mpiexec"
    image: str = ""
    partition: str = ""
    time_limit: str = "00:30:00"
    suggest_group: str = "lammps-stream-suggest"

    def __post_init__(self) -> None:
        _check_choice(
            "producer.sampler", self.sampler, ("random", "lhs", "sobol", "grid", "suggest")
        )
        if not self.suggest_group.strip():
            raise ConfigError(
                "producer.suggest_group: name the consumer group that claims suggestions"
            )
        _check_choice("producer.launcher", self.launcher, ("mpiexec", "srun"))
        _check_range("producer.np", self.np, 1, 100000)
        _check_range("producer.threads", self.threads, 1, 1024)
        _check_range("producer.steps", self.steps, 0, 10**9)
        _check_range("producer.timeout_seconds", self.timeout_seconds, 1, 10**7)
        _check_directory("producer.spool_dir", self.spool_dir, ProducerConfig.spool_dir)
        _check_directory("producer.jobs_dir", self.jobs_dir, ProducerConfig.jobs_dir)
        if self.pushgateway:
            _check_url("producer.pushgateway", self.pushgateway, "http://pushgateway:9091")
        try:
            time_limit_minutes(self.time_limit)
        except ValueError as err:
            raise ConfigError(f"producer.time_limit (--time): {err}") from None
        for axis in ("x", "y", "z"):
            bounds = getattr(self, axis)
            if len(bounds) != 2 or not 1 <= bounds[0] <= bounds[1]:
                raise ConfigError(
                    f"producer.{axis}: expected [low, high] with 1 <= low <= high, got {bounds}"
                )


@dataclass(frozen=True)
class StackConfig:
    """Where the local stack keeps its state and its downloads."""

    state_dir: str = "~/.local/state/lammps-stream/stack"
    cache_dir: str = "~/.cache/lammps-stream"
    start_service: bool = True
    start_timeout_seconds: float = 90.0
    authorizer: bool = False

    def __post_init__(self) -> None:
        _check_range("stack.start_timeout_seconds", self.start_timeout_seconds, 1, 3600)
        _check_directory("stack.state_dir", self.state_dir, StackConfig.state_dir)
        _check_directory("stack.cache_dir", self.cache_dir, StackConfig.cache_dir)


@dataclass(frozen=True)
class Config:
    """Every setting of the project, grouped by the part that reads it."""

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    producer: ProducerConfig = field(default_factory=ProducerConfig)
    stack: StackConfig = field(default_factory=StackConfig)


def load_config(
    path: str | os.PathLike[str] | None = "",
    env: typing.Mapping[str, str] | None = None,
    overrides: typing.Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration: defaults < file < environment < overrides.

    ``path=""`` means: ``$LAMMPS_STREAM_CONFIG`` if set, else ``./lammps-stream.yaml``
    if it exists. ``path=None`` reads no file. Raises :class:`ConfigError` with one
    line naming the key and what is allowed.
    """
    env = os.environ if env is None else env
    tree: dict[str, Any] = {}
    file = _config_file(path, env)
    if file is not None:
        _merge(tree, _read_yaml(file))
    for key, value in _env_settings(env).items():
        _set_dotted(tree, key, _Text(value))
    for key, value in (overrides or {}).items():
        if key not in _known_keys():
            raise ConfigError(f"{key}: {_not_a_setting(key)}")
        _set_dotted(tree, key, _Text(value) if isinstance(value, str) else value)
    return _build(Config, tree, prefix="")


def dump_config(config: Config) -> str:
    """The configuration as YAML, readable back by :func:`load_config`.

    >>> load_config(env={}, path=None) == Config()
    True
    """
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)


def write_config(config: Config, path: Path) -> Path:
    """Write ``config`` as YAML to ``path``, readable by its owner only: it may hold the SASL
    password, the snapshot signing key and the API token (a job directory on a shared file
    system, the stack's state). Returns ``path``.

    >>> import stat, tempfile
    >>> path = write_config(Config(), Path(tempfile.mkdtemp()) / "lammps-stream.yaml")
    >>> oct(stat.S_IMODE(path.stat().st_mode)), load_config(path=path, env={}) == Config()
    ('0o600', True)
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file that was there before keeps its mode otherwise
    with os.fdopen(descriptor, "w") as handle:
        handle.write(dump_config(config))
    return path


def child_env(config_file: Path, base: typing.Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for a child process that reads exactly ``config_file``.

    Other ``LAMMPS_STREAM_*`` variables are dropped: the file already holds their effect.
    """
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith(ENV_PREFIX)
    }
    env[CONFIG_ENV] = str(config_file)
    return env


def known_keys() -> list[str]:
    """Every dotted setting name, e.g. ``kafka.bootstrap``."""
    return list(_known_keys())


def expand(path: str) -> Path:
    """A config path with ``~`` and variables expanded.

    >>> expand("~/x").is_absolute()
    True
    """
    return Path(os.path.expandvars(os.path.expanduser(path)))


def time_limit_minutes(text: str) -> int:
    """A Slurm time limit (``sbatch --time``) as whole minutes, seconds rounded up, as Slurm
    does; Flux is given the same number of minutes.

    >>> [time_limit_minutes(t) for t in ("45", "30:00", "01:30:00", "1-12", "1-00:30")]
    [45, 30, 90, 2160, 1470]
    >>> time_limit_minutes("00:00:01"), time_limit_minutes("2-00:00:01")
    (1, 2881)
    >>> time_limit_minutes("abc")
    Traceback (most recent call last):
    ValueError: expected a time limit as minutes, MM:SS, HH:MM:SS, ... got 'abc'
    """
    days, dash, clock = text.strip().rpartition("-")
    parts = clock.split(":")
    numbers = [days, *parts] if dash else parts
    if len(parts) > 3 or not all(n.isdigit() for n in numbers):
        raise ValueError(
            f"expected a time limit as {TIME_LIMIT_FORMATS} (e.g. 02:00:00), got {text!r}"
        )
    values = [int(n) for n in parts]
    if dash:  # D-HH, D-HH:MM or D-HH:MM:SS
        hours, minutes, secs = [*values, 0, 0][:3]
    else:  # MM, MM:SS or HH:MM:SS
        hours, minutes, secs = values if len(values) == 3 else [0, *values, 0][:3]
    seconds = int(days or 0) * 86400 + hours * 3600 + minutes * 60 + secs
    if seconds == 0:
        raise ValueError(f"a time limit must be more than zero, got {text!r} (e.g. 02:00:00)")
    return -(-seconds // 60)


def run_seconds_within(limit_minutes: int) -> float:
    """How long a run may go in a job of ``limit_minutes``: the limit less a tenth of it (20 s
    to 2 min), left to stop the run and publish that it failed before the scheduler ends it.

    >>> run_seconds_within(1), run_seconds_within(10), run_seconds_within(60)
    (40.0, 540.0, 3480.0)
    """
    limit = limit_minutes * 60.0
    return limit - min(120.0, max(20.0, 0.1 * limit))


class _Loader(yaml.SafeLoader):
    r"""PyYAML's safe loader without YAML 1.1's base-60 numbers: ``30:00`` stays the string
    a Slurm time limit means, not 1800; and with YAML 1.2's exponents without a dot: ``2e-3``
    is a number, not text.

    >>> yaml.load("a: 30:00\nb: 1:30:00\nc: 12\nd: 2e-3\ne: 1E+3", Loader=_Loader)
    {'a': '30:00', 'b': '1:30:00', 'c': 12, 'd': 0.002, 'e': 1000.0}
    """


def _no_base_60(construct: typing.Callable[[Any, Any], Any]) -> typing.Callable[[Any, Any], Any]:
    def number(loader: Any, node: Any) -> Any:
        return loader.construct_scalar(node) if ":" in node.value else construct(loader, node)

    return number


_Loader.add_constructor("tag:yaml.org,2002:int", _no_base_60(yaml.SafeLoader.construct_yaml_int))
_Loader.add_constructor(
    "tag:yaml.org,2002:float", _no_base_60(yaml.SafeLoader.construct_yaml_float)
)
# YAML 1.1 reads a float only with a dot in it: 2e-3 would be the text '2e-3'
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _config_file(path: str | os.PathLike[str] | None, env: typing.Mapping[str, str]) -> Path | None:
    if path is None:
        return None
    if path == "":
        if env.get(CONFIG_ENV):
            return _existing(Path(env[CONFIG_ENV]), CONFIG_ENV)
        default = Path(DEFAULT_FILE)
        return default if default.is_file() else None
    return _existing(Path(path), "--config")


def _existing(path: Path, source: str) -> Path:
    if path.is_dir():
        raise ConfigError(
            f"{source}: {path} is a directory; give the YAML file in it, e.g. {path / DEFAULT_FILE}"
        )
    if not path.is_file():
        raise ConfigError(
            f"{source}: config file {path} does not exist; give an existing YAML file"
        )
    return path


def read_yaml(text: str) -> Any:
    r"""YAML ``text`` read as the configuration is: ``30:00`` is text, ``2e-3`` a number.

    >>> read_yaml("x: 1:30\ntemp: [1e-3, 2.5]")
    {'x': '1:30', 'temp': [0.001, 2.5]}
    """
    return yaml.load(text, Loader=_Loader)


def yaml_problem(err: Exception) -> str:
    """What PyYAML found wrong, on one line (its own message spans several).

    >>> try:
    ...     yaml.safe_load("model: pa\\nparams: [1, 2 z: 3")
    ... except yaml.YAMLError as err:
    ...     print(yaml_problem(err))
    expected ',' or ']', but got '<stream end>' at line 2
    >>> try:
    ...     yaml.safe_load("x: 1\\x07")
    ... except yaml.YAMLError as err:
    ...     print(yaml_problem(err))
    special characters are not allowed at character 4
    """
    problem = getattr(err, "problem", None) or getattr(err, "reason", None)
    problem = problem or err.__class__.__name__
    mark = getattr(err, "problem_mark", None)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}"
    position = getattr(err, "position", None)  # a ReaderError: a character YAML refuses
    return f"{problem} at character {position}" if position is not None else problem


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loader = _Loader(path.read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            _check_unique_keys(path, node, "", set())  # before the constructor merges `<<:`
            data = None if node is None else loader.construct_document(node)
            if isinstance(node, yaml.MappingNode):
                _check_text_as_typed(path, loader, node, Config, "")
        finally:
            loader.dispose()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the YAML file as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (kafka:, service:, ...)")
    return data


def _check_unique_keys(path: Path, node: Any, key: str, seen: set[int]) -> None:
    """:class:`ConfigError` for a mapping key given twice anywhere in the file: YAML keeps
    the last, so a second ``kafka:`` section would silently put the first's keys back to
    their defaults. Keys that ``<<:`` merges may be set again; that is what merging is for."""
    if id(node) in seen:  # an alias of a node checked already (or a recursive one)
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(path, item, f"{key}[{i}]", seen)
    elif isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            where = f"{key}.{name}" if key else str(name)
            line = key_node.start_mark.line + 1
            if name is not None and (key_node.tag, name) in lines:
                first = lines[(key_node.tag, name)]
                raise ConfigError(
                    f"{where} in {path}: given twice (lines {first} and {line}); the second "
                    "would replace the first whole, so merge them into one"
                )
            if name is not None:
                lines[(key_node.tag, name)] = line
            _check_unique_keys(path, value_node, where, seen)


def _text_kind(kind: Any) -> str:
    """``"str"`` for a setting read as text, ``"list"`` for a list of texts, else ``""``."""
    if isinstance(kind, types.UnionType):
        kind = typing.get_args(kind)[0]
    if kind is str:
        return "str"
    if typing.get_origin(kind) is list and typing.get_args(kind) == (str,):
        return "list"
    return ""


def _check_text_as_typed(path: Path, loader: _Loader, node: Any, cls: type, prefix: str) -> None:
    """Refuse a text setting that YAML reads as something else and would change: unquoted,
    ``0123`` is the number 83 and ``yes`` is true, so a password would differ from the one
    typed. A number that reads back as written (a time limit of ``45``) is taken as text.
    Only the file: the environment and ``--set`` are text already (:class:`_Text`)."""
    loader.flatten_mapping(node)  # `<<: *defaults` merges, as the constructor did
    hints = typing.get_type_hints(cls)
    for key_node, value_node in node.value:
        name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if name not in hints:  # unknown keys are _build's to name
            continue
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            if isinstance(value_node, yaml.MappingNode):
                _check_text_as_typed(path, loader, value_node, kind, f"{prefix}{name}.")
        elif _text_kind(kind) == "str":
            _check_text_scalar(path, loader, value_node, f"{prefix}{name}", f"{name}: ")
        elif _text_kind(kind) == "list" and isinstance(value_node, yaml.SequenceNode):
            for i, item in enumerate(value_node.value):
                _check_text_scalar(path, loader, item, f"{prefix}{name}[{i}]", "")


def _check_text_scalar(path: Path, loader: _Loader, node: Any, key: str, lead: str) -> None:
    """:class:`ConfigError` for a scalar at a text ``key`` that YAML reads as no text: true or
    false, a date, nothing, or a number that does not read back as typed (``0123``: 83).
    ``lead`` starts the fix shown (``sasl_password: ``; nothing for a list's item).

    >>> path = Path("c.yaml")
    >>> node = yaml.compose("0123", Loader=_Loader)
    >>> _check_text_scalar(path, _Loader(""), node, "kafka.sasl_password", "sasl_password: ")
    Traceback (most recent call last):
    ...
    lammps_stream.errors.ConfigError: kafka.sasl_password in c.yaml: a number (83) where text ...
    """
    if not isinstance(node, yaml.ScalarNode):  # a list or mapping: _coerce refuses it
        return
    value = loader.construct_object(node, deep=True)
    if isinstance(value, str):
        return
    if isinstance(value, int | float) and not isinstance(value, bool) and str(value) == node.value:
        return  # reads back as typed
    where = f"{key} in {path}"
    if value is None:
        fix = (
            f'write {lead}"" to leave it empty, or the text in quotes'
            if lead
            else "give the text in quotes, or drop the empty entry"
        )
        raise ConfigError(f"{where}: nothing where text is wanted; {fix}")
    if isinstance(value, bool):
        what = "true or false"
    elif isinstance(value, int | float):
        what = "a number"
    elif isinstance(value, datetime.date):
        what = "a date"
    else:  # what an explicit tag makes, e.g. !!binary
        what = f"a {type(value).__name__}"
    shown = value.isoformat() if isinstance(value, datetime.date) else value
    raise ConfigError(
        f"{where}: {what} ({shown}) where text is wanted; "
        f"quote it: {lead}{json.dumps(node.value, ensure_ascii=False)}"
    )


def _env_settings(env: typing.Mapping[str, str]) -> dict[str, str]:
    by_env = {ENV_PREFIX + key.replace(".", "_").upper(): key for key in _known_keys()}
    settings = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in (CONFIG_ENV, ABORT_FILE_ENV):
            continue
        if name not in by_env:
            close = difflib.get_close_matches(name, list(by_env), n=1, cutoff=0.85)
            fix = (
                f"did you mean {close[0]}?"
                if close
                else f"unset it or use one of {ENV_PREFIX}<SECTION>_<KEY>, "
                f"e.g. {ENV_PREFIX}KAFKA_BOOTSTRAP"
            )
            raise ConfigError(f"{name}: no such setting; {fix}")
        settings[by_env[name]] = value
    return settings


class _Text(str):
    """A setting's value as typed in the environment or ``--set``: read by its setting's type
    (a password ``0123`` stays ``0123``; a port ``7000`` becomes 7000), not as YAML text. Text
    loses the blanks around it (a Secret made from a file ends in a newline); a list is
    ``a,b``, ``[a, b]`` or YAML's block form."""


def _parse_scalar(value: str) -> Any:
    try:
        return yaml.load(value, Loader=_Loader) if value.strip() else str(value)
    except yaml.YAMLError:
        return str(value)


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for depth, part in enumerate(parents):
        if node.get(part) is None:  # a section left empty in the file (`kafka:`)
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"{where}: expected a mapping of settings, got {node!r}")
    node[leaf] = value


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _not_a_setting(key: str) -> str:
    """Why ``--set KEY=...`` names no setting, and how to mend it: a section wants one of
    its keys, an environment variable's name is that of a setting, else
    :func:`_unknown_setting_hint`."""
    known = _known_keys()
    in_section = [k[len(key) + 1 :] for k in known if k.startswith(key + ".")]
    if in_section:
        return (
            f"not a setting but a section; give {key}.KEY=VALUE, KEY one of {', '.join(in_section)}"
        )
    by_env = {ENV_PREFIX + k.replace(".", "_").upper(): k for k in known}
    if key in by_env:
        return (
            f"not a setting but the environment variable of {by_env[key]}; "
            f"give --set {by_env[key]}=VALUE"
        )
    return f"not a setting; {_unknown_setting_hint(key)}"


def _unknown_setting_hint(key: str) -> str:
    """How to mend ``--set KEY=...`` for a key that is no setting: the setting it is closest
    to, else the keys of its section, else the sections.

    >>> _unknown_setting_hint("kafka.partiton")
    'did you mean kafka.partitions?'
    >>> _unknown_setting_hint("stack.frob")
    'the keys of stack are state_dir, cache_dir, start_service, start_timeout_seconds, authorizer'
    >>> print(_unknown_setting_hint("nope"))  # doctest: +NORMALIZE_WHITESPACE
    give section.key with section one of kafka, service, producer, stack
    (see lammps-stream.example.yaml)
    """
    known = _known_keys()
    section, dot, leaf = key.rpartition(".")
    in_section = [k[len(section) + 1 :] for k in known if dot and k.startswith(section + ".")]
    if in_section:  # a known section: the name within it
        close = difflib.get_close_matches(leaf, in_section, n=1, cutoff=0.75)
        if close:
            return f"did you mean {section}.{close[0]}?"
        return f"the keys of {section} are {', '.join(in_section)}"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
    if close:  # a misspelt section
        return f"did you mean {close[0]}?"
    sections = ", ".join(dict.fromkeys(k.split(".")[0] for k in known))
    return f"give section.key with section one of {sections} (see lammps-stream.example.yaml)"


def _known_keys(cls: type = Config, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            keys.extend(_known_keys(kind, f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _build(cls: type, tree: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if tree is None and prefix:  # a section left empty in the file (`stack:`, keys commented)
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(tree).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in tree:
        if key not in names:
            raise ConfigError(
                f"{prefix}{key}: unknown key; allowed here: {', '.join(sorted(names))}"
            )
    kwargs = {}
    for name, value in tree.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(f"{prefix}{name}", value, kind)
    return cls(**kwargs)


def _coerce(key: str, value: Any, kind: Any) -> Any:
    if kind is Any:
        return _parse_scalar(value) if isinstance(value, _Text) else value
    origin = typing.get_origin(kind)
    if origin is list:
        (item,) = typing.get_args(kind)
        text = value.strip() if isinstance(value, _Text) else ""
        if text.startswith(("[", "- ")) or "\n" in text:  # YAML's flow or block form
            value = _parse_scalar(text)
        elif isinstance(value, str):
            value = [_Text(part.strip()) for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(key, v, item) for v in value]
    if isinstance(kind, types.UnionType):
        kind = typing.get_args(kind)[0]
    if isinstance(value, _Text):
        if kind is str:
            return str(value).strip()
        number = _decimal(value) if kind in (int, float) else None
        value = _parse_scalar(value) if number is None else number
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if kind is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported setting type {kind}")  # pragma: no cover


def _decimal(text: str) -> int | None:
    """A whole number typed in decimal, leading zeros and all (YAML 1.1 would read ``010`` as
    8 and ``06066`` as 3126); None for anything else.

    >>> _decimal(" 06066 "), _decimal("-7"), _decimal("0x10"), _decimal("1.5")
    (6066, -7, None, None)
    """
    stripped = text.strip()
    return int(stripped, 10) if re.fullmatch(r"[+-]?[0-9]+", stripped) else None


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key}: must be between {low} and {high}, got {value}")


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: must be one of {', '.join(allowed)}, got {value!r}")


def _check_directory(key: str, value: str, default: str) -> None:
    """An empty path is the working directory: the stack's state or the spool would land
    wherever a command happened to run, and the next command elsewhere would not find it."""
    if not value.strip():
        raise ConfigError(f"{key}: give a directory (default {default}), not nothing")


def _check_url(key: str, value: str, example: str) -> None:
    """An http(s) URL (a bare host:port means http), its port a number.

    >>> _check_url("producer.pushgateway", "http://pushgw:91a", "http://gw:9091")
    Traceback (most recent call last):
    ...
    lammps_stream.errors.ConfigError: producer.pushgateway: expected a URL like http://gw:9091, got 'http://pushgw:91a'
    """
    parts = urllib.parse.urlsplit(value if "://" in value else f"http://{value}")
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ConfigError(f"{key}: expected a URL like {example}, got {value!r}")


def _check_heap(key: str, value: str) -> None:
    """A Java heap size with its unit (``-Xmx``'s k, m, g or t), checked before the local
    broker's JVM refuses it with a line of its own; a bare number, which Java reads as bytes,
    is refused too.

    >>> _check_heap("kafka.heap", "2g")
    >>> _check_heap("kafka.heap", "768")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lammps_stream.errors.ConfigError: kafka.heap: '768' is not a Java heap size with its ...
    """
    if not re.fullmatch(r"[1-9][0-9]{0,8}[kKmMgGtT]", value):
        raise ConfigError(
            f"{key}: {value!r} is not a Java heap size with its unit; give megabytes or "
            "gigabytes, e.g. 768m or 2g"
        )


def _check_host_port(key: str, value: str) -> None:
    for part in value.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{key}: expected host:port[,host:port...], got {value!r}")
