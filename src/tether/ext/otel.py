"""OpenTelemetry spans of the lifecycle (`pip install 'tether[otel]'`).

With OpenTelemetry's API installed, `tether.run` (and so `tether run` and every
pre-fork worker) traces each start, stop and reload of the graph by itself: a span for
the phase, one per stage in it, and one per service's start, stop or hook, so a slow
start shows in any tracing backend as a waterfall of which service waited for which.
Configure the SDK and an exporter as for any application (the spans go nowhere
until you do). [`LifecycleTracer`][tether.ext.otel.LifecycleTracer] is the subscriber
that does it; subscribe one yourself around a graph your own code starts:

```python
from tether.ext.otel import LifecycleTracer

with tether.subscribe(LifecycleTracer()):
    async with Api():
        ...
```
"""

from __future__ import annotations

from tether.ext._extra import needs

with needs(__name__, "otel", "opentelemetry"):
    from tether._process._tracing import LifecycleTracer

__all__ = ["LifecycleTracer"]

LifecycleTracer.__module__ = __name__
