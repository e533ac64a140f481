"""Fault injection over the whole local stack: the shop pipeline under broker, database and
process faults, checked by the demo's oracle (``make chaos``, ``headrace chaos``).

- ``faults``: what can be injected (a stack server restarted, killed or paused; a pipeline
  process killed or stopped) and how each is undone;
- ``probe``: the pipeline's progress and lag read from Kafka, and peak RSS per process;
- ``scenario``: the named schedules (``ci``: a few minutes, ``long``: an hour);
- ``runner``: rounds of seed, run, inject, recover, verify; the table of what happened.
"""
