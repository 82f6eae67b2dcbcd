import asyncio

import tether


class Cache(tether.Service):
    async def on_start(self) -> None:  # mode's name: tether would never call it
        print("filling the cache")


try:
    tether.check(Cache())
except tether.HookError as exc:
    print(exc)


class Button(tether.Service):
    @tether.not_a_hook
    def on_start(self) -> None:  # called by the UI toolkit, not by tether
        print("clicked")


async def main() -> None:
    async with Button() as button:
        button.on_start()


asyncio.run(main())
