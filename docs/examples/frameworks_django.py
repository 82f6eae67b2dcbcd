import asyncio
import os

import aiohttp
import django
from django.conf import settings

import tether
from tether.ext.wsgi import Server, get
from tether.health import Health

# A one-file Django project; yours has its settings module (DJANGO_SETTINGS_MODULE).
settings.configure(
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    SECRET_KEY=os.environ.get("SECRET_KEY", "example-only"),
    DATABASES={},
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402 - after the settings
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


class Inventory(tether.Service):
    async def start(self) -> None:
        self.items = {"pears": 5}


def item(request: HttpRequest, name: str) -> JsonResponse:
    inventory = get(request, Inventory)  # the running Inventory of the graph, by type
    return JsonResponse({name: inventory.items.get(name, 0)})


urlpatterns = [path("items/<name>", item)]

container = tether.Container()
server = Server(
    get_wsgi_application(),
    port=int(os.environ.get("PORT", "0")),
    container=container,
    uses=[Inventory],
    health=Health(drain_delay=float(os.environ.get("DRAIN_DELAY", "0.1"))),
)


async def try_it() -> None:
    async with (
        server,
        aiohttp.ClientSession() as client,
        client.get(f"{server.url}/items/pears") as response,
    ):
        print(response.status, await response.json())


if __name__ == "__main__":
    asyncio.run(try_it())  # as a process: tether.run(server, container=container)
