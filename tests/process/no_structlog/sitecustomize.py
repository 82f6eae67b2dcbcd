"""Put on PYTHONPATH, makes structlog look not installed (``find_spec`` finds nothing)."""

import sys

sys.modules["structlog"] = None  # type: ignore[assignment]
