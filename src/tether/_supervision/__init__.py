"""Supervision: supervisors and their restart policies, service threads, lazy services.

Imports the core and injection.
"""
