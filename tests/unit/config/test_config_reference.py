"""The configuration reference: every key documented, the example's keys all present."""

from __future__ import annotations

import re

import yaml

from headrace.config import iter_config_keys


def _generic(path: str) -> str:
    """``sources.<name:mysql>.url`` -> ``sources.*.url``; ``a[].b`` -> ``a.b``."""
    path = re.sub(r"<[^>]+>", "*", path)
    return path.replace("[]", "")


def _file_paths(data, prefix=""):
    """Key paths of a pipeline file with user names replaced by ``*``."""
    if isinstance(data, dict):
        for key, value in data.items():
            if prefix in ("sources", "stages", "sinks"):
                here = f"{prefix}.*"
            elif prefix.endswith((".set", ".measures", ".rename", ".cast", ".client")):
                yield prefix
                continue
            else:
                here = f"{prefix}.{key}" if prefix else str(key)
            if prefix not in ("sources", "stages", "sinks"):
                yield here
            yield from _file_paths(value, here)
    elif isinstance(data, list):
        for item in data:
            yield from _file_paths(item, prefix)


def test_every_key_has_a_type_and_a_description():
    keys = list(iter_config_keys())
    assert len(keys) > 100
    for path, type_, description in keys:
        assert type_.strip(), path
        assert description.strip(), f"{path} has no description"
        assert description[0].isupper() and description.endswith((".", ")")), path
    paths = [k[0] for k in keys]
    assert len(paths) == len(set(paths)), "duplicate key paths"


def test_reference_covers_every_key_of_the_example(shop_path):
    documented = {_generic(p) for p, _, _ in iter_config_keys()}
    used = set(_file_paths(yaml.safe_load(shop_path.read_text())))
    assert used, "nothing parsed"
    missing = sorted(used - documented)
    assert not missing, missing


def test_reference_examples():
    keys = {path: type_ for path, type_, _ in iter_config_keys()}
    assert keys["sources.<name:mysql>.mode"] == (
        "one of bulk|incrementing|timestamp|timestamp+incrementing, required"
    )
    assert keys["stages.<name>.rate_limit.per"] == "duration, default 1s"
    assert keys["stages.<name>.rate_limit.burst"] == "number, default rate (at least 1)"
    assert keys["stages.<name>.transform[].filter"] == "expression, optional"
    assert keys["sinks.<name:dynamodb>.create"] == "boolean, default false"
    assert keys["metrics.port"] == "integer, default 9108"
    assert keys["kafka.sasl_password"] == "secret, optional"
    assert keys["sinks.<name:mongodb>.from"] == "topic, required"
