# An application and its tests in one file; `python testing_pytest.py` runs pytest on it.
import asyncio
import subprocess
import sys

import pytest

import tether
import tether.testing


class Mailer:
    def send(self, to: str, text: str) -> None:
        raise RuntimeError("no mail server here")  # a real SMTP client, say


class Database(tether.Service):
    def __init__(self) -> None:
        self.url = "sqlite:///app.db"
        self.users: list[str] = []


class Signup(tether.Service):
    def __init__(self, db: Database, mailer: Mailer) -> None:
        self.db = db
        self.mailer = mailer

    async def register(self, email: str) -> None:
        self.db.users.append(email)
        self.mailer.send(email, "welcome")


class Heartbeat(tether.Service):
    def __init__(self) -> None:
        self.beats: list[float] = []

    @tether.timer(30)
    async def beat(self) -> None:
        self.beats.append(asyncio.get_running_loop().time())
        if len(self.beats) == 3:
            self.request_stop()


# --- the tests (in a project: conftest.py and test_app.py)


@pytest.fixture
def tether_container() -> tether.Container:
    container = tether.Container()  # the application's container
    container.register(Mailer)
    return container


class FakeMailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, to: str, text: str) -> None:
        self.sent.append((to, text))


@pytest.fixture
async def signup(tether_start: tether.testing.Starter) -> Signup:
    return await tether_start(Signup)  # Database, then Signup; stopped after the test


@pytest.mark.tether_override(Mailer, FakeMailer)
async def test_signup_welcomes_new_users(signup: Signup) -> None:
    await signup.register("ada@example.org")
    assert signup.db.users == ["ada@example.org"]
    assert isinstance(signup.mailer, FakeMailer)
    assert signup.mailer.sent == [("ada@example.org", "welcome")]


def test_heartbeat_every_thirty_seconds(virtual_clock: tether.testing.VirtualClock) -> None:
    heartbeat = Heartbeat()
    virtual_clock.run(heartbeat.run())  # a minute and a half, instantly
    assert heartbeat.beats == [30.0, 60.0, 90.0]


if __name__ == "__main__":
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"]
    sys.exit(subprocess.call([*command, "-o", "asyncio_mode=auto"]))  # noqa: S603
