"""Every supported kind of section class: dataclass, attrs, msgspec Struct, pydantic model."""

import dataclasses
import datetime as dt
from typing import Any

import attrs
import msgspec
import pydantic
import pytest

import tether


@dataclasses.dataclass
class DataclassDb:
    url: str
    pool_size: int = 10
    timeout: dt.timedelta = dt.timedelta(seconds=5)
    debug: bool = False
    hosts: list[str] = dataclasses.field(default_factory=list)


@attrs.define
class AttrsDb:
    url: str
    pool_size: int = attrs.field(default=10, validator=attrs.validators.gt(0))
    timeout: dt.timedelta = dt.timedelta(seconds=5)
    debug: bool = False
    hosts: list[str] = attrs.field(factory=list)


class StructDb(msgspec.Struct):
    url: str
    pool_size: int = 10
    timeout: dt.timedelta = dt.timedelta(seconds=5)
    debug: bool = False
    hosts: list[str] = msgspec.field(default_factory=list)


class PydanticDb(pydantic.BaseModel):
    url: str
    pool_size: int = pydantic.Field(default=10, gt=0)
    timeout: dt.timedelta = dt.timedelta(seconds=5)
    debug: bool = False
    hosts: list[str] = pydantic.Field(default_factory=list)


KINDS = [DataclassDb, AttrsDb, StructDb, PydanticDb]

ENVIRON = {
    "APP_DB_URL": "postgres://db/app",
    "APP_DB_POOL_SIZE": "20",
    "APP_DB_TIMEOUT": "1m",
    "APP_DB_DEBUG": "on",
    "APP_DB_HOSTS": "a,b",
}


@pytest.mark.parametrize("cls", KINDS, ids=lambda cls: cls.__name__)
def test_each_kind_loads_from_strings(cls: type[Any]) -> None:
    """The same environment strings become the same typed values in every kind of class."""
    loaded = tether.Config().add_env("APP", environ=ENVIRON).load(cls, "db")
    assert isinstance(loaded, cls)
    assert loaded.url == "postgres://db/app"
    assert loaded.pool_size == 20
    assert loaded.timeout == dt.timedelta(minutes=1)
    assert loaded.debug is True
    assert loaded.hosts == ["a", "b"]


@pytest.mark.parametrize("cls", KINDS, ids=lambda cls: cls.__name__)
def test_each_kind_reports_every_wrong_value(cls: type[Any]) -> None:
    """Type errors are collected field by field in every kind of class."""
    environ = {"APP_DB_POOL_SIZE": "many", "APP_DB_DEBUG": "perhaps"}
    with pytest.raises(tether.ConfigError) as caught:
        tether.Config().add_env("APP", environ=environ).load(cls, "db")
    assert caught.value.problems == (
        (
            "db.url: missing; expected str. Set it in a config file under [db], as APP_DB_URL "
            "or with -c db.url=..."
        ),
        "db.pool_size: expected int, got 'many' from environment variable APP_DB_POOL_SIZE",
        "db.debug: expected bool, got 'perhaps' from environment variable APP_DB_DEBUG",
    )


@pytest.mark.parametrize("cls", [AttrsDb, PydanticDb], ids=lambda cls: cls.__name__)
def test_the_class_own_validators_run(cls: type[Any]) -> None:
    """attrs validators and pydantic constraints still apply, named with their key."""
    config = tether.Config().add_dict({"db": {"url": "x", "pool_size": 0}}, source="defaults")
    with pytest.raises(tether.ConfigError) as caught:
        config.load(cls, "db")
    (problem,) = caught.value.problems
    assert problem.startswith("db")
    assert "rejected" in problem
    assert "0" in problem


def test_a_dataclass_post_init_check_is_reported() -> None:
    """A ValueError raised by __post_init__ becomes a config problem naming the section."""

    @dataclasses.dataclass
    class Ports:
        low: int
        high: int

        def __post_init__(self) -> None:
            if self.low > self.high:
                raise ValueError("low must not exceed high")

    config = tether.Config().add_overrides(["ports.low=9", "ports.high=1"])
    with pytest.raises(tether.ConfigError) as caught:
        config.load(Ports, "ports")
    assert caught.value.problems == ("ports: low must not exceed high (Ports rejected the values)",)


def test_pydantic_only_field_types_are_left_to_pydantic() -> None:
    """Types msgspec does not know (HttpUrl, SecretStr) are validated by the model."""

    class Service(pydantic.BaseModel):
        endpoint: pydantic.HttpUrl
        token: pydantic.SecretStr

    config = tether.Config().add_overrides(["svc.endpoint=https://api.example", "svc.token=s3"])
    loaded = config.load(Service, "svc")
    assert str(loaded.endpoint) == "https://api.example/"
    assert loaded.token.get_secret_value() == "s3"
    rendered = config.render()
    assert 'token = "***"' in rendered
    assert "s3" not in rendered


def test_pydantic_errors_are_reported_with_their_source() -> None:
    """An invalid value pydantic rejects is named with its key and where it came from."""

    class Service(pydantic.BaseModel):
        endpoint: pydantic.HttpUrl

    config = tether.Config().add_overrides(["svc.endpoint=not a url"])
    with pytest.raises(tether.ConfigError) as caught:
        config.load(Service, "svc")
    (problem,) = caught.value.problems
    assert problem.startswith("svc.endpoint: Input should be a valid URL")
    assert "from -c svc.endpoint" in problem


def test_nested_sections_of_mixed_kinds() -> None:
    """A Struct section holding an attrs class and a pydantic model, all from env vars."""

    @attrs.define
    class Tls:
        verify: bool = True

    class Limits(pydantic.BaseModel):
        rate: float = 1.0

    @tether.section("api")
    class Api(msgspec.Struct):
        tls: Tls = msgspec.field(default_factory=Tls)
        limits: Limits = msgspec.field(default_factory=Limits)

    environ = {"APP_API_TLS_VERIFY": "no", "APP_API_LIMITS_RATE": "2.5"}
    api = tether.Config().add_env("APP", environ=environ).load(Api)
    assert api.tls == Tls(verify=False)
    assert api.limits == Limits(rate=2.5)


@pytest.mark.parametrize("cls", KINDS, ids=lambda cls: cls.__name__)
def test_each_kind_is_injectable_as_a_section(cls: type[Any]) -> None:
    """Declared once with its section name, any kind is resolved by the container."""
    section_cls = tether.section("db")(type(f"Injected{cls.__name__}", (cls,), {}))
    container = tether.Container(config=tether.Config().add_env("APP", environ=ENVIRON))
    loaded: Any = container.get(section_cls)
    assert loaded.pool_size == 20
    assert container.get(section_cls) is loaded
