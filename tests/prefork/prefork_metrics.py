"""Pre-fork workers whose Health serves /metrics on the port the master bound."""

from __future__ import annotations

import tether
from tether.ext.prometheus import Metrics
from tether.health import Health


def app() -> tether.Service:
    """In each worker: the health endpoints on the shared socket, /metrics among them."""
    return Health(sock=tether.listeners()[0], metrics=Metrics(registry=None), drain_delay=0)
