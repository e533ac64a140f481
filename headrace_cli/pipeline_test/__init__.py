"""``headrace test``: pipeline tests a user writes beside the pipeline file, run in process.

A test file (``<pipeline>_test.yaml``) holds cases; each case feeds records (or S3 object
bodies, MySQL rows) to some of the pipeline's stages, sources or sinks and says what must
come out. The stages run the worker's own code (``streams.stages``) over in-memory topics on
a simulated clock; sources run the producers' parsing and encoding; sinks the writers'
``plan``. No broker, database or store is needed, and a case takes milliseconds.

Modules, one job each:

- ``model``: what a test file may say (pydantic, unknown keys refused with their path);
- ``suite``: loading a file and the pipeline it tests; ``prepare``: checking each case
  against the pipeline and making its input messages;
- ``values``: how keys, times, durations and values are written in a test file, both ways;
- ``topics``: in-memory partitioned topics; ``engine``: the simulated worker and clock;
  ``window_timer``: when an aggregate's idle timer fires;
- ``sources`` and ``sinks``: source parsing and sink writes without servers;
- ``outcome``: what a case produced, as the file writes it; ``compare`` and ``checks``:
  expectations against it, with record-by-record diffs;
- ``runner``: one case, timed; ``report``, ``junit``, ``update``: printing, JUnit XML,
  rewriting expectations.
"""
