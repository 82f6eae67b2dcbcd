"""Config: sources merged in order, env matched to fields, coercion, errors, redaction."""

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

import tether


@dataclasses.dataclass
class Tls:
    ca_file: str = ""
    verify: bool = True


@tether.section("db")
@dataclasses.dataclass
class DbConfig:
    url: str
    pool_size: int = 10
    timeout: dt.timedelta = dt.timedelta(seconds=5)
    hosts: list[str] = dataclasses.field(default_factory=list)
    password: tether.Secret[str] = dataclasses.field(default_factory=lambda: tether.Secret(""))
    tls: Tls = dataclasses.field(default_factory=Tls)


@tether.section("")
@dataclasses.dataclass
class General:
    log_level: str = "INFO"
    show_warnings: bool = False


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "app.toml"
    path.write_text(
        'log_level = "DEBUG"\n'
        'show_warnings = "yes"\n'
        "[db]\n"
        'url = "postgres://file/app"\n'
        "pool_size = 20\n"
        'timeout = "10s"\n'
        "[db.tls]\n"
        'ca_file = "/etc/ca.pem"\n'
    )
    return path


def test_toml_file_loads_into_a_section(toml_file: Path) -> None:
    """A TOML table becomes the section's typed fields; strings are converted."""
    config = tether.Config().add_toml(toml_file)
    db = config.load(DbConfig)
    assert db.url == "postgres://file/app"
    assert db.pool_size == 20
    assert db.timeout == dt.timedelta(seconds=10)
    assert db.tls == Tls(ca_file="/etc/ca.pem")


def test_top_level_section(toml_file: Path) -> None:
    """buvar's GeneralConfig: section "" reads the top-level keys (``yes`` is True)."""
    general = tether.Config().add_toml(toml_file).load(General)
    assert general == General(log_level="DEBUG", show_warnings=True)


def test_later_sources_win(toml_file: Path) -> None:
    """dict < TOML < environment < -c overrides, in the order they were added."""
    config = (
        tether.Config()
        .add_dict({"db": {"url": "sqlite://", "pool_size": 1, "hosts": ["a"]}}, source="defaults")
        .add_toml(toml_file)
        .add_env("APP", environ={"APP_DB_POOL_SIZE": "30", "APP_DB_URL": "postgres://env/app"})
        .add_overrides(["db.url=postgres://cli/app"])
    )
    db = config.load(DbConfig)
    assert db.hosts == ["a"]  # defaults
    assert db.timeout == dt.timedelta(seconds=10)  # file
    assert db.pool_size == 30  # environment
    assert db.url == "postgres://cli/app"  # -c


def test_environment_matches_fields_with_underscores_and_nested_sections() -> None:
    """APP_DB_POOL_SIZE is db.pool_size; APP_DB_TLS_CA_FILE is db.tls.ca_file."""
    environ = {
        "APP_DB_URL": "postgres://env",
        "APP_DB_POOL_SIZE": "7",
        "APP_DB_TLS_CA_FILE": "/ca.pem",
        "APP_DB_TLS_VERIFY": "off",
        "OTHER_DB_URL": "ignored",
    }
    db = tether.Config().add_env("APP", environ=environ).load(DbConfig)
    assert db.pool_size == 7
    assert db.tls == Tls(ca_file="/ca.pem", verify=False)


def test_environment_is_read_when_added(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``environ=``, os.environ is snapshotted when the layer is added."""
    monkeypatch.setenv("APP_DB_URL", "postgres://real-env")
    config = tether.Config().add_env("APP")
    monkeypatch.setenv("APP_DB_URL", "postgres://changed")
    assert config.load(DbConfig).url == "postgres://real-env"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", True),
        ("no", False),
        ("true", True),
        ("False", False),
        ("on", True),
        ("OFF", False),
        ("1", True),
        ("0", False),
    ],
)
def test_boolean_spellings(text: str, expected: bool) -> None:
    """Booleans accept yes/no, true/false, on/off and 1/0, in any case."""
    general = tether.Config().add_overrides([f"show_warnings={text}"]).load(General)
    assert general.show_warnings is expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("45", 45), ("PT2M", 120)],
)
def test_duration_spellings(text: str, seconds: float) -> None:
    """A timedelta field reads 10s, 5m, 1h30m, 250ms, plain seconds or ISO 8601."""
    db = tether.Config().add_overrides(["db.url=x", f"db.timeout={text}"]).load(DbConfig)
    assert db.timeout == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["a,b, c", '["a", "b", "c"]'])
def test_list_spellings(text: str) -> None:
    """A list field reads ``a,b,c`` or JSON from an environment variable."""
    environ = {"APP_DB_URL": "x", "APP_DB_HOSTS": text}
    db = tether.Config().add_env("APP", environ=environ).load(DbConfig)
    assert db.hosts == ["a", "b", "c"]


def test_every_problem_is_reported_at_once_with_its_source(toml_file: Path) -> None:
    """Wrong types from a file, the environment and -c, and a missing key: one error."""
    toml_file.write_text('[db]\npool_size = "many"\n[db.tls]\nverify = "maybe"\n')
    config = (
        tether.Config()
        .add_toml(toml_file)
        .add_env("APP", environ={"APP_DB_TIMEOUT": "soon"})
        .add_overrides(["db.hosts=[1, 2"])
    )
    with pytest.raises(tether.ConfigError) as caught:
        config.load(DbConfig)
    assert caught.value.problems == (
        (
            "db.url: missing; expected str. Set it in a config file under [db], as "
            "APP_DB_URL or with -c db.url=..."
        ),
        f"db.pool_size: expected int, got 'many' from {toml_file}",
        (
            "db.timeout: expected timedelta, got 'soon' from environment variable APP_DB_TIMEOUT "
            "(Invalid ISO8601 duration)"
        ),
        "db.hosts: expected list[str], got '[1, 2' from -c db.hosts (Input data was truncated)",
        f"db.tls.verify: expected bool, got 'maybe' from {toml_file}",
    )
    assert str(caught.value).startswith("Invalid configuration for DbConfig [db] (5 problems):\n")


def test_unknown_keys_are_reported(tmp_path: Path) -> None:
    """A misspelt key in a file is an error that names it, its file, and the real keys."""
    path = tmp_path / "app.toml"
    path.write_text('[db]\nurl = "x"\npool_sise = 3\n')
    with pytest.raises(tether.ConfigError) as caught:
        tether.Config().add_toml(path).load(DbConfig)
    assert caught.value.problems == (
        (
            f"db.pool_sise: unknown key (from {path}); DbConfig has hosts, password, pool_size, "
            "timeout, tls, url"
        ),
    )


def test_missing_and_invalid_files_are_named(tmp_path: Path) -> None:
    """A missing file, or one that is not TOML, is an error naming the file."""
    missing = tmp_path / "missing.toml"
    with pytest.raises(tether.ConfigError, match=r"missing\.toml: config file not found"):
        tether.Config().add_toml(missing)
    assert tether.Config().add_toml(missing, optional=True).load(General) == General()
    broken = tmp_path / "broken.toml"
    broken.write_text("[db\n")
    with pytest.raises(tether.ConfigError, match=r"broken\.toml: invalid TOML: .*line 1"):
        tether.Config().add_toml(broken)


def test_malformed_overrides_are_all_named() -> None:
    """``-c`` items without ``=`` or with an empty key are refused together."""
    with pytest.raises(tether.ConfigError) as caught:
        tether.Config().add_overrides(["db.url", "db..x=1", "ok=1"])
    assert caught.value.problems == (
        "-c 'db.url': expected section.key=value, such as -c db.port=5432",
        "-c 'db..x=1': expected section.key=value, such as -c db.port=5432",
    )


def test_secrets_are_redacted_in_errors_repr_and_render() -> None:
    """A Secret field shows *** everywhere; reveal() gives the value."""

    @tether.section("auth")
    @dataclasses.dataclass
    class Auth:
        token: tether.Secret[str]
        pin: tether.Secret[int] = dataclasses.field(default_factory=lambda: tether.Secret(0))

    config = tether.Config().add_env(
        "APP", environ={"APP_AUTH_TOKEN": "hunter2", "APP_AUTH_PIN": "12x4"}
    )
    with pytest.raises(tether.ConfigError) as caught:
        config.load(Auth)
    assert "12x4" not in str(caught.value)
    assert (
        "auth.pin: expected Secret[int], got '***' from environment variable APP_AUTH_PIN"
        in (caught.value.problems[0])
    )
    auth = tether.Config().add_env("APP", environ={"APP_AUTH_TOKEN": "hunter2"}).load(Auth)
    assert auth.token.reveal() == "hunter2"
    assert "hunter2" not in repr(auth)
    assert str(auth.token) == "***"


def test_render_shows_each_value_with_its_source(toml_file: Path) -> None:
    """The effective config, as ``tether check`` prints it: values, sources, defaults, ***."""
    config = (
        tether.Config()
        .add_toml(toml_file)
        .add_env("APP", environ={"APP_DB_PASSWORD": "hunter2"})
        .add_overrides(["db.pool_size=30"])
    )
    text = config.render([General, DbConfig])
    assert text == (
        f'log_level = "DEBUG"    # {toml_file}\n'
        f"show_warnings = true   # {toml_file}\n"
        "\n"
        "[db]\n"
        f'url = "postgres://file/app"   # {toml_file}\n'
        "pool_size = 30                # -c db.pool_size\n"
        f'timeout = "10s"               # {toml_file}\n'
        "hosts = []                    # default\n"
        'password = "***"              # environment variable APP_DB_PASSWORD\n'
        "\n"
        "[db.tls]\n"
        f'ca_file = "/etc/ca.pem"   # {toml_file}\n'
        "verify = true             # default\n"
    )
    assert "hunter2" not in text


def test_render_without_arguments_shows_what_was_loaded(toml_file: Path) -> None:
    """render() with no sections lists those loaded so far, e.g. while resolving a graph."""
    config = tether.Config().add_toml(toml_file)
    assert config.render() == ""
    config.load(General)
    assert config.render().startswith('log_level = "DEBUG"')


def test_sections_are_injected_from_the_containers_config(toml_file: Path) -> None:
    """A @tether.section class needs no registration: the container loads it once."""

    class Database:
        def __init__(self, config: DbConfig) -> None:
            self.config = config

    container = tether.Container(config=tether.Config().add_toml(toml_file))
    container.register(Database)
    db = container.get(Database)
    assert db.config.pool_size == 20
    assert container.get(DbConfig) is db.config


async def test_a_scope_can_override_the_config(toml_file: Path) -> None:
    """A scope with its own Config gets its own sections; the root keeps its own."""
    container = tether.Container(config=tether.Config().add_toml(toml_file))
    root_db = container.get(DbConfig)
    async with container.scope() as scope:
        scope.add(tether.Config().add_dict({"db": {"url": "sqlite://test"}}))
        assert scope.get(DbConfig).url == "sqlite://test"
    assert container.get(DbConfig) is root_db


def test_a_config_error_while_resolving_names_the_chain() -> None:
    """Resolving a service whose section is invalid raises ConfigError noting the chain."""

    class Database:
        def __init__(self, config: DbConfig) -> None:
            self.config = config

    container = tether.Container()
    container.register(Database)
    with pytest.raises(tether.ConfigError) as caught:
        container.get(Database)
    assert caught.value.problems[0].startswith("db.url: missing; expected str.")
    assert "tether: raised while building Database(config: DbConfig) -> DbConfig()" in (
        caught.value.__notes__
    )


def test_section_names_are_checked() -> None:
    """A section name is identifiers joined by dots, and the class must be loadable."""
    with pytest.raises(tether.ConfigError, match=r"Invalid section name 'db config'"):
        tether.section("db config")

    class Plain:
        pass

    with pytest.raises(tether.ConfigError, match=r"put @tether.section above @dataclass"):
        tether.section("plain")(Plain)


def test_dotted_section_names_are_nested_tables(tmp_path: Path) -> None:
    """``app.db`` is the table ``[app.db]`` and the variables ``APP_APP_DB_*``."""

    @tether.section("app.db")
    @dataclasses.dataclass
    class Nested:
        url: str
        size: int = 1

    path = tmp_path / "app.toml"
    path.write_text('[app.db]\nurl = "x"\n')
    config = tether.Config().add_toml(path).add_env("APP", environ={"APP_APP_DB_SIZE": "4"})
    assert config.load(Nested) == Nested(url="x", size=4)


def test_importing_tether_loads_no_conversion_library() -> None:
    """msgspec, pydantic and attrs are imported only when a section is loaded."""
    import subprocess
    import sys

    code = (
        "import sys, tether\n"
        "tether.Container().get(tether.Config)\n"
        "print(sorted(m for m in ('msgspec', 'pydantic', 'attrs') if m in sys.modules))\n"
    )
    done = subprocess.run(  # noqa: S603  (the running interpreter, fixed code)
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "[]"
