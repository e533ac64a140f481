"""Developer tooling, never imported by a running pipeline: the local stack (``stack``), the
shop demo (``demo``), the benchmarks (``bench``) and the Faust smoke app (``faust_smoke``).
The CLI's ``stack``, ``demo`` and ``bench`` commands load it."""
