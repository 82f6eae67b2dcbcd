import dataclasses
import datetime as dt

import tether


@dataclasses.dataclass
class Tls:
    ca_file: str
    verify: bool = True


@tether.section("db")
@dataclasses.dataclass
class DbConfig:
    url: str
    tls: Tls
    password: tether.Secret[str]
    pool_size: int = 10
    timeout: dt.timedelta = dt.timedelta(seconds=5)


environ = {"APP_DB_PASSWORD": "hunter2", "APP_DB_TLS_VERIFY": "no"}
config = (
    tether.Config()
    .add_dict({"db": {"pool_size": 5}})  # defaults of your own
    .add_toml("injection_config.toml")  # a file; later layers win
    .add_env("APP", environ=environ)  # APP_DB_TLS_VERIFY is db.tls.verify
    .add_overrides(["db.pool_size=30"])  # what `tether run -c db.pool_size=30` passes
)
db = config.load(DbConfig)
assert db.pool_size == 30
assert db.timeout == dt.timedelta(seconds=30)
assert db.tls.verify is False
assert db.password.reveal() == "hunter2"
print(config.render())

# Every problem at once, with its key, its source and the expected type.
broken = tether.Config().add_env("APP", environ={"APP_DB_POOL_SIZE": "many"})
try:
    broken.load(DbConfig)
except tether.ConfigError as error:
    print(error)
