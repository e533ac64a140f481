"""Benchmarks: each measures our code against its raw baseline in the same run
(``headrace bench produce|stream|sink|e2e``); ``common`` holds the figure's shape."""
