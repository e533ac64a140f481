"""load_pipeline: file handling, interpolation, decryption, and the wording of every error."""

from __future__ import annotations

import pytest

from headrace.config import PipelineConfigError, encrypt, generate_key, load_pipeline
from headrace.config.model import Pipeline
from headrace.errors import EXIT_CONFIG, ConfigError
from producers.mysql import MySQLSource

BASE = """\
name: t
kafka: {bootstrap_servers: "127.0.0.1:9092"}
sources:
  orders_db:
    type: mysql
    url: mysql+pymysql://app:pw@127.0.0.1:3306/shop
    table: orders
    mode: bulk
    topic: orders.raw
"""


def _db(p: Pipeline) -> MySQLSource:
    """BASE's MySQL source ``orders_db``, as its type."""
    source = p.sources["orders_db"]
    assert isinstance(source, MySQLSource)
    return source


def error_of(path, env=None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, env={} if env is None else env)
    assert info.value.exit_code == EXIT_CONFIG
    return info.value


# -- the messages named in the issue -------------------------------------------------------------


def test_bad_enum_message_is_exactly_as_documented(shop_data, write, shop_env):
    shop_data["sources"]["orders_db"]["mode"] = "timestmap"
    path = write(shop_data)
    err = error_of(path, shop_env)
    assert str(err) == (
        f"{path}: sources.orders_db.mode: 'timestmap' is not one of bulk, incrementing, "
        "timestamp, timestamp+incrementing"
    )
    assert isinstance(err, PipelineConfigError)
    assert err.path == str(path) and err.key == "sources.orders_db.mode"


def test_unknown_key_suggests_the_right_one(shop_data, write, shop_env):
    sink = shop_data["sinks"]["orders_mongo"]
    sink["colection"] = sink.pop("collection")
    path = write(shop_data)
    lines = str(error_of(path, shop_env)).splitlines()
    assert (
        f"{path}: sinks.orders_mongo.colection: unknown key (did you mean 'collection'?)" in lines
    )
    assert f"{path}: sinks.orders_mongo.collection: missing required key" in lines


def test_unknown_key_without_close_match_lists_the_allowed_keys(write):
    path = write(BASE + "metrics: {port: 9108, wibble: 1}\n")
    allowed = "port, final_scrape"
    assert str(error_of(path)) == f"{path}: metrics.wibble: unknown key (allowed: {allowed})"


def test_unknown_top_level_key(write):
    path = write(BASE + "sink: {}\n")
    assert str(error_of(path)) == f"{path}: sink: unknown key (did you mean 'sinks'?)"


def test_missing_required_key(write):
    path = write(BASE.replace("    topic: orders.raw\n", ""))
    assert str(error_of(path)) == f"{path}: sources.orders_db.topic: missing required key"


def test_bad_source_type_names_the_choices(write):
    path = write(BASE + "  other: {type: kafka, topic: x}\n")
    assert (
        str(error_of(path))
        == f"{path}: sources.other.type: 'kafka' is not one of mysql, mysql_cdc, s3"
    )


def test_missing_source_type(write):
    path = write(BASE + "  other: {topic: x}\n")
    assert str(error_of(path)) == (
        f"{path}: sources.other.type: missing required key (one of mysql, mysql_cdc, s3)"
    )


def test_bad_duration(write):
    path = write(BASE + "    poll_interval: 5 minutes\n")
    assert str(error_of(path)) == (
        f"{path}: sources.orders_db.poll_interval: '5 minutes' is not a duration (use seconds "
        "as a number or a number with a unit, e.g. 500ms, 1s, 1m, 2h)"
    )


def test_bad_expression_names_key_and_column(write):
    path = write(
        BASE
        + """\
stages:
  clean:
    from: orders.raw
    to: orders.clean
    transform:
      - filter: "status != 'x' and and quantity > 0"
"""
    )
    message = str(error_of(path))
    prefix = f"{path}: stages.clean.transform[0].filter: invalid expression at column 19: "
    assert message.startswith(prefix), message
    assert message.endswith("(in \"status != 'x' and and quantity > 0\")")
    assert "\n" not in message


def test_bad_expression_in_set_and_measure(write):
    path = write(
        BASE
        + """\
stages:
  clean:
    from: orders.raw
    to: orders.clean
    transform:
      - set: {total: "price * * quantity"}
  agg:
    from: orders.clean
    to: agg
    aggregate:
      group_by: []
      window: {type: tumbling, size: 1m}
      measures: {spend: "sum(price +)"}
      having: "spend >"
"""
    )
    lines = str(error_of(path)).splitlines()
    assert lines[0].startswith(
        f"{path}: stages.clean.transform[0].set.total: invalid expression at column 9: "
    )
    assert lines[1].startswith(
        f"{path}: stages.agg.aggregate.measures.spend: invalid expression at column 12: "
    )
    assert lines[1].endswith("(in 'sum(price +)')")
    assert lines[2].startswith(f"{path}: stages.agg.aggregate.having: invalid expression at col")
    assert len(lines) == 3


def test_multi_line_expression_reports_line_and_column(write):
    path = write(
        BASE
        + """\
stages:
  clean:
    from: orders.raw
    to: orders.clean
    transform:
      - filter: |-
          status != 'x'
          and ) quantity
"""
    )
    assert "invalid expression at line 2, column 5: " in str(error_of(path))


def test_hopping_window_without_step(write):
    path = write(
        BASE
        + """\
stages:
  agg:
    from: orders.raw
    to: agg
    aggregate:
      group_by: customer_id
      window: {type: hopping, size: 1m}
      measures: {n: count()}
"""
    )
    assert str(error_of(path)) == (
        f"{path}: stages.agg.aggregate.window.step: required for a hopping window"
    )


def test_dangling_from_topic(write):
    path = write(
        BASE
        + """\
sinks:
  out:
    type: dynamodb
    from: orders.raws
    table: orders
    partition_key: id
"""
    )
    assert str(error_of(path)) == (
        f"{path}: sinks.out.from: topic 'orders.raws' is not produced by any source or stage "
        "(did you mean 'orders.raw'?); list topics produced elsewhere under topics:"
    )


def test_all_errors_are_reported_one_per_line(write):
    path = write(BASE.replace("mode: bulk", "mode: sometimes") + "metrics: {port: -1}\n")
    lines = str(error_of(path)).splitlines()
    assert lines == [
        f"{path}: sources.orders_db.mode: 'sometimes' is not one of bulk, incrementing, "
        "timestamp, timestamp+incrementing",
        f"{path}: metrics.port: must be at least 1, got -1",
    ]
    err = error_of(path)
    assert isinstance(err, PipelineConfigError) and len(err.problems) == 2
    assert err.__cause__ is None and err.__context__ is None


# -- file and YAML problems -------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert str(error_of(path)) == (
        f"{path}: file not found (give the pipeline file with -f FILE or HEADRACE_PIPELINE)"
    )


def test_directory_instead_of_file(tmp_path):
    assert str(error_of(tmp_path)) == f"{tmp_path}: is a directory, not a pipeline file"


def test_yaml_syntax_error_has_line_and_column(write):
    path = write("name: t\nkafka: {bootstrap_servers: a:1\nsources: {}\n")
    message = str(error_of(path))
    assert message.startswith(f"{path}: line 3, column 8: YAML syntax error: ")
    path = write("name: t\n  kafka: x\n")
    assert str(error_of(path)) == (
        f"{path}: line 2, column 8: YAML syntax error: mapping values are not allowed here"
    )


def test_duplicate_keys_are_errors(write):
    path = write(BASE + "  orders_db: {type: s3}\n")
    assert str(error_of(path)) == (
        f"{path}: line 10, column 3: YAML syntax error: duplicate key 'orders_db'"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty; expected a mapping with name, kafka, sources, stages, sinks"),
        (
            "# nothing\n",
            "the file is empty; expected a mapping with name, kafka, sources, stages, sinks",
        ),
        (
            "- a\n- b\n",
            "the top level must be a mapping (name, kafka, sources, stages, sinks), not a list",
        ),
        (
            "just text\n",
            "the top level must be a mapping (name, kafka, sources, stages, sinks), not a str",
        ),
    ],
)
def test_top_level_must_be_a_mapping(write, text, expected):
    path = write(text)
    assert str(error_of(path)) == f"{path}: {expected}"


# -- interpolation ----------------------------------------------------------------------------


def test_interpolation_with_values_and_defaults(write):
    text = BASE.replace(
        "app:pw@127.0.0.1:3306", "${DB_USER:-app}:${DB_PASS}@${DB_HOST:-127.0.0.1}:3306"
    )
    text += "metrics: {port: '${METRICS_PORT:-9200}'}\n"
    p = load_pipeline(write(text), env={"DB_PASS": "p4ss-word", "DB_HOST": ""})
    assert _db(p).url == "mysql+pymysql://app:p4ss-word@127.0.0.1:3306/shop"
    assert p.metrics.port == 9200
    p = load_pipeline(write(text), env={"DB_PASS": "x", "DB_USER": "u", "METRICS_PORT": "9300"})
    assert _db(p).url == "mysql+pymysql://u:x@127.0.0.1:3306/shop"
    assert p.metrics.port == 9300


def test_interpolation_escape_and_no_recursion(write):
    text = BASE.replace("table: orders", "table: '$${NOT_A_VAR}${T}'")
    p = load_pipeline(write(text), env={"T": "${OTHER}"})
    assert _db(p).table == "${NOT_A_VAR}${OTHER}"


def test_interpolation_uses_only_the_given_env(write, monkeypatch):
    monkeypatch.setenv("DB_PASS", "from-os-environ")
    path = write(BASE.replace("app:pw@", "app:${DB_PASS}@"))
    assert "DB_PASS is not set" in str(error_of(path, {}))
    p = load_pipeline(path)  # env=None: os.environ
    assert "from-os-environ" in _db(p).url


def test_missing_env_var_names_key_and_variable(write):
    path = write(
        BASE.replace("app:pw@", "app:${MYSQL_PASSWORD}@").replace(
            "table: orders", "table: ${TABLE}"
        )
    )
    assert str(error_of(path)).splitlines() == [
        f"{path}: sources.orders_db.url: environment variable MYSQL_PASSWORD is not set; export "
        "it or write ${MYSQL_PASSWORD:-default}",
        f"{path}: sources.orders_db.table: environment variable TABLE is not set; export it or "
        "write ${TABLE:-default}",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "${1BAD}",
            "'${1BAD}' is not a variable reference; write ${NAME} or ${NAME:-default} "
            "(use $${ for a literal '${')",
        ),
        ("x${OPEN", "unclosed '${': write ${NAME} or ${NAME:-default}"),
    ],
)
def test_malformed_references(write, value, expected):
    path = write(BASE.replace("table: orders", f"table: '{value}'"))
    assert str(error_of(path)) == f"{path}: sources.orders_db.table: {expected}"


# -- encrypted values ----------------------------------------------------------------------------


def test_encrypted_value_is_decrypted(write):
    key = generate_key()
    token = encrypt("mysql+pymysql://app:enc-pass-42@127.0.0.1:3306/shop", key)
    path = write(BASE.replace("url: mysql+pymysql://app:pw@127.0.0.1:3306/shop", f"url: {token}"))
    p = load_pipeline(path, env={"HEADRACE_SECRET_KEY": key})
    assert _db(p).url == "mysql+pymysql://app:enc-pass-42@127.0.0.1:3306/shop"


def test_encrypted_value_from_an_env_var(write):
    key = generate_key()
    path = write(BASE.replace("table: orders", "table: ${TABLE_ENC}"))
    p = load_pipeline(path, env={"HEADRACE_SECRET_KEY": key, "TABLE_ENC": encrypt("t1", key)})
    assert _db(p).table == "t1"


def test_missing_secret_key(write):
    token = encrypt("hidden-plaintext-1", generate_key())
    path = write(BASE.replace("table: orders", f"table: {token}"))
    message = str(error_of(path, {}))
    assert message == (
        f"{path}: sources.orders_db.table: the value is encrypted (enc:...) but "
        "HEADRACE_SECRET_KEY is not set; export the key it was encrypted with (made by "
        "'headrace secrets keygen')"
    )
    assert token.removeprefix("enc:") not in message


def test_wrong_key_or_corrupt_token(write):
    token = encrypt("hidden-plaintext-2", generate_key())
    path = write(
        BASE.replace("table: orders", f"table: {token}").replace(
            "mode: bulk", "mode: enc:not-a-token"
        )
    )
    message = str(error_of(path, {"HEADRACE_SECRET_KEY": generate_key()}))
    fix = (
        "cannot decrypt the enc: value: it is corrupt or was encrypted with another key than "
        "HEADRACE_SECRET_KEY; re-encrypt it with 'headrace secrets encrypt'"
    )
    assert message.splitlines() == [
        f"{path}: sources.orders_db.table: {fix}",
        f"{path}: sources.orders_db.mode: {fix}",
    ]
    assert token.removeprefix("enc:") not in message and "hidden-plaintext-2" not in message


def test_invalid_secret_key(write):
    token = encrypt("hidden-plaintext-3", generate_key())
    path = write(BASE.replace("table: orders", f"table: {token}"))
    message = str(error_of(path, {"HEADRACE_SECRET_KEY": "not-a-fernet-key"}))
    assert message == (
        f"{path}: sources.orders_db.table: HEADRACE_SECRET_KEY is not a valid Fernet key (32 "
        "url-safe base64-encoded bytes); set it to the key made by 'headrace secrets keygen'"
    )
    assert "not-a-fernet-key" not in message


def test_rotated_keys_decrypt_old_values(write):
    old, new = generate_key(), generate_key()
    path = write(BASE.replace("table: orders", f"table: {encrypt('orders', old)}"))
    p = load_pipeline(path, env={"HEADRACE_SECRET_KEY": f"{new},{old}"})
    assert _db(p).table == "orders"
