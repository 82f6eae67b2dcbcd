"""Pre-fork: the master, its workers, the worker side, and the sockets they share.

Imports every layer below it; nothing below imports it.
"""
