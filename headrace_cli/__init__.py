"""The ``headrace`` command line: the only place that wires producers, streams and connectors."""
