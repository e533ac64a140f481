"""Sources: S3 objects and MySQL rows into Kafka, resumable, schema-checked.

- ``batch``: what a source hands the runner (``Batch``, ``Poison``) and the ``Source`` protocol.
- ``runner``: poll a source, encode, produce with delivery callbacks, checkpoint behind the acks.
- ``encoder``: key bytes, value bytes (JSON or Confluent-framed Avro) and event time per record.
- ``s3_source`` / ``s3_formats``: listing, bounded concurrent reads, jsonl/csv/json parsers.
- ``mysql_source`` / ``mysql_watermark``: catalog checks, streaming SELECTs, the four modes.
- ``build``: one configured source into a ready runner; ``publish``: ad-hoc records.
- ``progress``: the terminal bar / log line; ``bench``: ``headrace bench produce``;
  ``bench_data`` and ``testing``: data and helpers shared by tests and the benchmark.
"""
