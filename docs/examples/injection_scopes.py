import asyncio
from collections.abc import AsyncIterator

import tether


class Mailer:
    def send(self, to: str) -> str:
        return f"smtp -> {to}"


class FakeMailer(Mailer):
    def send(self, to: str) -> str:
        return f"fake -> {to}"


class Signup:
    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer


class Session:
    def __init__(self, user: str) -> None:
        self.user = user


async def session(user: str = "anonymous") -> AsyncIterator[Session]:
    print("session opened")
    yield Session(user)
    print("session closed")  # runs when the container or scope that built it closes


container = tether.Container()
container.register(Mailer)
container.register(Signup)
container.register(session, transient=True)


async def main() -> None:
    print(container.get(Signup).mailer.send("ada@example.org"))
    async with container.scope() as scope:  # held in a context variable
        scope.add(FakeMailer(), provides=Mailer)  # an override for this scope only
        print(scope.get(Signup).mailer.send("ada@example.org"))  # built in the scope
        current = await scope.aget(Session, user="ada")  # per-call keyword override
        print("user", current.user)
    print(container.get(Signup).mailer.send("ada@example.org"))  # the parent's own


asyncio.run(main())
