import os
import socket
import subprocess
import sys
import tempfile

import tether


class Api(tether.Service):
    async def on_started(self) -> None:
        self.request_stop()  # end at once: this example shows the notifications


if len(sys.argv) > 1:  # the child: a service under "systemd"
    tether.run(Api(), log_level="critical")

# The parent plays systemd: a datagram socket whose path goes in NOTIFY_SOCKET.
with (
    tempfile.TemporaryDirectory() as directory,
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify,
):
    path = os.path.join(directory, "notify")  # noqa: PTH118
    notify.bind(path)
    code = subprocess.call(  # noqa: S603
        [sys.executable, __file__, "child"], env={**os.environ, "NOTIFY_SOCKET": path}
    )
    notify.setblocking(False)  # noqa: FBT003
    while True:
        try:
            message = notify.recv(4096).decode()
        except BlockingIOError:
            break
        print(message.replace("\n", " | "))
print("exit", code)
