"""Injection and configuration: providers, the container, config and conversion, plugins.

Imports the core only.
"""
