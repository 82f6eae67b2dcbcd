"""Integrations with frameworks, one module each, importing its framework at the top.

`import tether` never imports them: import the one you use, e.g.
`from tether.ext import aiohttp` (`pip install 'tether[aiohttp]'`) or
`from tether.ext import asgi` (`pip install 'tether[asgi]'`).
"""
