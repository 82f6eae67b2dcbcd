# systemPY's daemon example on systemPY 0.1.7: hooks are registered with a direction
# argument, TargetExt is now systempy.unit.ext.target_ext.ExtTarget, and a class that is
# instantiated must be named *App (*Unit, *Target and *Mixin name the other roles).
import asyncio
import os
import sys

from systempy import (
    DIRECTION,
    LoopUnit,
    Target,
    register_hook_after,
    register_hook_before,
    register_target_method,
)
from systempy.unit.ext.target_ext import ExtTarget


class ExampleDaemonTarget(ExtTarget):
    @register_hook_before(ExtTarget.post_startup, DIRECTION.FORWARD)
    def before_post_startup(self) -> None: ...

    @register_hook_before(ExtTarget.pre_shutdown, DIRECTION.GATHER)
    async def before_pre_shutdown(self) -> None: ...

    @register_hook_after(Target.post_shutdown, DIRECTION.BACKWARD)
    def after_post_shutdown(self) -> None: ...

    @register_hook_after(Target.post_shutdown, DIRECTION.BACKWARD)
    def also_after_post_shutdown(self) -> None: ...

    @register_hook_after(also_after_post_shutdown, DIRECTION.BACKWARD)
    def after_also_after_post_shutdown(self) -> None: ...


class ExampleDaemonApp(ExampleDaemonTarget, LoopUnit):
    async def main_async(self):
        print("MAIN", flush=True)
        while True:
            await asyncio.sleep(5)  # noqa

    def on_init(self) -> None:
        print("ON INIT")

    def pre_startup(self) -> None:
        print("\tPRE STARTUP")

    async def on_startup(self) -> None:
        print("\t\tON STARTUP")

    async def post_startup(self) -> None:
        print("\t\t\tPOST STARTUP")

    def before_post_startup(self):
        print("\t\t\tCUSTOM BEFORE POST STARTUP")

    async def before_pre_shutdown(self):
        print("\t\t\tCUSTOM BEFORE PRE SHUTDOWN")

    async def pre_shutdown(self) -> None:
        print("\t\t\tPRE SHUTDOWN")

    async def on_shutdown(self) -> None:
        print("\t\tON SHUTDOWN")

    def post_shutdown(self) -> None:
        print("\tPOST SHUTDOWN")

    def also_after_post_shutdown(self) -> None:
        print("\tALSO AFTER POST SHUTDOWN")

    def after_also_after_post_shutdown(self) -> None:
        print("\tAFTER ALSO AFTER POST SHUTDOWN")

    def on_exit(self) -> None:
        print("ON EXIT")


if __name__ == "__main__":
    print("PID: %s" % os.getpid())
    ExampleDaemonApp.launch()
