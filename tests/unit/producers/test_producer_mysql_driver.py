"""MySQL driver choice: a missing driver is a clear config error; datetimes parse fast and
zero dates still go to the driver's own converter."""

from __future__ import annotations

import importlib.util
from datetime import datetime

import pytest

from headrace.errors import ConfigError
from producers.mysql_source import _conversions, _fast_datetime, check_driver, driver_of


def test_driver_of_urls() -> None:
    assert driver_of("mysql+pymysql://u:p@h/db") == "pymysql"
    assert driver_of("mysql+mysqldb://u:p@h/db") == "mysqldb"
    assert driver_of("mysql://u:p@h/db") == "mysqldb"  # SQLAlchemy's default MySQL driver


def test_a_missing_driver_names_the_package_and_the_fix(monkeypatch) -> None:
    real = importlib.util.find_spec  # what producers.mysql_source looks drivers up with
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: None if name == "MySQLdb" else real(name),
    )
    with pytest.raises(ConfigError) as err:
        check_driver("mysql+mysqldb://u:secret@h/db", "orders")
    msg = str(err.value)
    assert "driver 'mysqldb' needs the mysqlclient package" in msg
    assert "pip install 'headrace[mysqlclient]'" in msg and "libmariadb-dev" in msg
    assert "mysql+pymysql://" in msg and "secret" not in msg
    assert err.value.key == "sources.orders.url"
    check_driver("mysql+pymysql://u:p@h/db", "orders")  # installed: no error


def test_fast_datetime_parses_mysql_text_and_falls_back() -> None:
    convert = _fast_datetime(lambda s: ("driver", s))
    assert convert("2024-01-02 03:04:05.123456") == datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert convert(b"2024-01-02 03:04:05") == datetime(2024, 1, 2, 3, 4, 5)
    assert convert("0000-00-00 00:00:00") == ("driver", "0000-00-00 00:00:00")


@pytest.mark.parametrize("driver", ["pymysql", "mysqldb"])
def test_conversion_tables_replace_only_datetimes(driver) -> None:
    conv = _conversions(driver)
    assert conv is not None
    if driver == "pymysql":
        from pymysql.constants import FIELD_TYPE
        from pymysql.converters import conversions
    else:
        from MySQLdb.constants import FIELD_TYPE
        from MySQLdb.converters import conversions
    changed = {k for k in conv if conv[k] is not conversions.get(k)}
    assert changed == {FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP}
    assert conv[FIELD_TYPE.DATETIME]("2024-01-02 03:04:05") == datetime(2024, 1, 2, 3, 4, 5)


def test_decimals_stay_exact_text_for_json_output() -> None:
    from pymysql.constants import FIELD_TYPE

    conv = _conversions("pymysql", decimals_as_text=True)
    assert conv is not None
    assert conv[FIELD_TYPE.NEWDECIMAL]("-12345678901.50") == "-12345678901.50"
    assert conv[FIELD_TYPE.DECIMAL](b"0.10") == "0.10"
