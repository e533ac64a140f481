"""``headrace demo``: the first thing a newcomer runs."""
