"""The core: services and their records, the graph, scheduling, stages, events, tasks.

The lowest layer: it imports only the standard library and itself. What it must tell
a higher layer goes through an event (`subscribe`) or an interface the higher layer
registers (`set_launcher`, `Record.supervisor`).
"""
