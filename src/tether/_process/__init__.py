"""The process: the runner, signals, sd_notify, logging, deadlines, the REPL, pictures.

Imports the core, injection and supervision.
"""
