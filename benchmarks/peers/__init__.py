"""Peer systems measured beside clinlake by ``python -m benchmarks.run``.

Each peer module sets up its own environment once (a virtualenv or a Spark with the peer's
jars, under ``build/peers/``), trains the peer where the benchmark needs it, and measures it
on the workload file the run hands it (JSON lines: ``{"note_id": ..., "text": ...}``).
"""
