# systemPY's daemon example on tether: a stage for each of systemPY's hooks, placed as
# systemPY places it; systemPY's name for each is in the comment beside it.
import asyncio
import os

import tether

# systemPY's pre_startup and post_shutdown (sync, around the loop's start and stop).
PRE_STARTUP = tether.Stage("pre_startup", before=tether.START, direction="forward")
POST_SHUTDOWN = tether.Stage("post_shutdown", after=tether.STOP, direction="backward")
# ExampleDaemonTarget's hooks: register_hook_before/after + register_target_method.
BEFORE_POST_STARTUP = tether.Stage("before_post_startup", before=tether.STARTED)
BEFORE_PRE_SHUTDOWN = tether.Stage(
    "before_pre_shutdown", before=tether.STOPPING, direction="gather"
)
ALSO_AFTER_POST_SHUTDOWN = tether.Stage(
    "also_after_post_shutdown", after=POST_SHUTDOWN, direction="backward"
)
AFTER_ALSO_AFTER_POST_SHUTDOWN = tether.Stage(
    "after_also_after_post_shutdown", after=ALSO_AFTER_POST_SHUTDOWN, direction="backward"
)


class ExampleDaemon(tether.Service):
    @tether.task  # main_async: runs while the daemon runs, cancelled when it stops
    async def main(self) -> None:
        print("MAIN", flush=True)
        while True:
            await asyncio.sleep(5)

    def on_init(self) -> None:  # on_init: before the event loop exists
        print("ON INIT")

    @PRE_STARTUP
    def pre_startup(self) -> None:
        print("\tPRE STARTUP")

    async def start(self) -> None:  # on_startup
        print("\t\tON STARTUP")

    async def on_started(self) -> None:  # post_startup
        print("\t\t\tPOST STARTUP")

    @BEFORE_POST_STARTUP
    def before_post_startup(self) -> None:
        print("\t\t\tCUSTOM BEFORE POST STARTUP")

    @BEFORE_PRE_SHUTDOWN
    async def before_pre_shutdown(self) -> None:
        print("\t\t\tCUSTOM BEFORE PRE SHUTDOWN")

    async def on_stopping(self) -> None:  # pre_shutdown
        print("\t\t\tPRE SHUTDOWN")

    async def stop(self) -> None:  # on_shutdown
        print("\t\tON SHUTDOWN")

    @POST_SHUTDOWN
    def post_shutdown(self) -> None:
        print("\tPOST SHUTDOWN")

    @ALSO_AFTER_POST_SHUTDOWN
    def also_after_post_shutdown(self) -> None:
        print("\tALSO AFTER POST SHUTDOWN")

    @AFTER_ALSO_AFTER_POST_SHUTDOWN
    def after_also_after_post_shutdown(self) -> None:
        print("\tAFTER ALSO AFTER POST SHUTDOWN")

    def on_exit(self) -> None:  # on_exit: after the event loop has closed
        print("ON EXIT")


if __name__ == "__main__":
    print(f"PID: {os.getpid()}")
    ExampleDaemon.launch(log_level="warning")  # ExampleDaemonApp.launch()
