import tether

# --8<-- [start:stages]
# systemPY: register_hook_before(TargetExt.post_startup) + register_target_method("forward")
BEFORE_STARTED = tether.Stage("before_started", before=tether.STARTED, direction="forward")
BEFORE_STOPPING = tether.Stage("before_stopping", before=tether.STOPPING, direction="gather")


class ExampleDaemon(tether.Service):
    def on_init(self) -> None:  # systemPY: on_init (before the event loop exists)
        print("ON INIT")

    async def start(self) -> None:  # systemPY: pre_startup + on_startup
        print("\tON STARTUP")

    @BEFORE_STARTED
    def before_post_startup(self) -> None:
        print("\t\tCUSTOM BEFORE POST STARTUP")

    async def on_started(self) -> None:  # systemPY: post_startup
        print("\t\tPOST STARTUP")
        self.request_stop()  # ends this example; a daemon would run until SIGTERM

    @BEFORE_STOPPING
    async def before_pre_shutdown(self) -> None:
        print("\t\tCUSTOM BEFORE PRE SHUTDOWN")

    async def on_stopping(self) -> None:  # systemPY: pre_shutdown
        print("\t\tPRE SHUTDOWN")

    async def stop(self) -> None:  # systemPY: on_shutdown + post_shutdown
        print("\tON SHUTDOWN")

    def on_exit(self) -> None:  # systemPY: on_exit (after the loop has closed)
        print("ON EXIT")


if __name__ == "__main__":
    ExampleDaemon.launch(log_level="warning")  # systemPY: ExampleDaemon.launch()
# --8<-- [end:stages]
