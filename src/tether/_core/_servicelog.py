"""`Service.log`: a logger that names the service in every line (mode's `self.log`)."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Self, overload

from ._records import display_name

if TYPE_CHECKING:
    from ._base import ServiceBase

__all__ = ["ServiceLogProperty", "ServiceLogger"]


class ServiceLogger(logging.LoggerAdapter[logging.Logger]):
    """The logger of the service's module, with the service's name on each record.

    The message starts with `[Name]` (so a plain `%(message)s` format shows it) and
    the record carries `service` as an extra field (so JSON and structlog output have
    it as a key). The name is read at each call, so a service renamed later logs under
    its new name. Extra fields passed by the caller are kept.
    """

    def __init__(self, service: ServiceBase) -> None:
        super().__init__(logging.getLogger(type(service).__module__), {})
        self.service = service

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Prefix `msg` with the service's name and add `service` to `extra`."""
        name = display_name(self.service)
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("service", name)
        kwargs["extra"] = extra
        return f"[{name}] {msg}", kwargs


class ServiceLogProperty:
    """`Service.log`: computed on access, and shadowed by an attribute of that name.

    A non-data descriptor, so a service that sets `self.log = ...` itself (a list, its
    own logger) keeps working as it did before tether had `log`.
    """

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: ServiceBase, owner: type[Any]) -> ServiceLogger: ...
    def __get__(self, instance: ServiceBase | None, owner: type[Any]) -> Self | ServiceLogger:
        if instance is None:
            return self
        return ServiceLogger(instance)
