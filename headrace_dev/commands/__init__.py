"""The developer commands of the ``headrace`` CLI: ``stack``, ``demo`` and ``bench``. The CLI
loads them by name (``headrace_cli.main``); without this package they are simply absent."""
