"""The HTTP gateway: publish records to Kafka topics over HTTP (issue #18)."""
