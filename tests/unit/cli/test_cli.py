"""The CLI's contract: every command has help, exit codes 0/1/2, secrets never printed."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from headrace.config import generate_key
from headrace_cli.main import _command_modules, build_parser, main

SHOP = Path(__file__).resolve().parents[1] / "config" / "fixtures" / "shop.yaml"
COMMANDS = [
    "demo",
    "stack",
    "check",
    "config",
    "secrets",
    "test",
    "produce",
    "publish",
    "worker",
    "sink",
    "run",
    "dlq",
    "bench",
    "status",
    "gateway",
    "chaos",
]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        lines = [line for line in out.splitlines() if line.strip().startswith(name + " ")]
        assert lines, f"`headrace --help` does not list {name}"
        assert len(lines[0].split(maxsplit=1)) == 2, f"{name} has no one-line help"


@pytest.mark.parametrize(
    "argv",
    [[c, "--help"] for c in COMMANDS]
    + [["stack", a, "--help"] for a in ("up", "down", "status", "logs")]
    + [
        ["config", "show", "--help"],
        ["secrets", "keygen", "--help"],
        ["secrets", "encrypt", "--help"],
    ],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: headrace" in capsys.readouterr().out


def test_every_command_is_registered_once() -> None:
    provided = [c for m in _command_modules() for c in m.COMMANDS]
    assert len(provided) == len(set(provided))
    names = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert names is not None
    assert set(COMMANDS) == set(names)


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_check_accepts_the_architecture_example(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYSQL_PASSWORD", "s3cr3t-pw-value")
    code, out, _ = _run(capsys, "check", "-f", str(SHOP))
    assert code == 0
    assert "pipeline 'shop' is valid: 2 source(s), 3 stage(s), 2 sink(s)" in out


def test_check_rejects_a_typo_with_exit_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYSQL_PASSWORD", "s3cr3t-pw-value")
    bad = tmp_path / "pipeline.yaml"
    bad.write_text(SHOP.read_text().replace("mode: timestamp+incrementing", "mode: timestmap"))
    code, _, err = _run(capsys, "check", "-f", str(bad))
    assert code == 2
    assert "sources.orders_db.mode: 'timestmap' is not one of" in err
    assert str(bad) in err


def test_check_missing_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "check", "-f", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml" in err


def test_pipeline_file_from_env_and_global_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYSQL_PASSWORD", "s3cr3t-pw-value")
    target = tmp_path / "mine.yaml"
    shutil.copy(SHOP, target)
    monkeypatch.setenv("HEADRACE_PIPELINE", str(target))
    assert _run(capsys, "check")[0] == 0
    monkeypatch.delenv("HEADRACE_PIPELINE")
    monkeypatch.chdir(tmp_path)
    assert _run(capsys, "check")[0] == 2  # ./pipeline.yaml does not exist
    assert _run(capsys, "-f", str(target), "check")[0] == 0


def test_config_show_redacts_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYSQL_PASSWORD", "s3cr3t-pw-value")
    for fmt in ([], ["--json"]):
        code, out, err = _run(capsys, "config", "show", "-f", str(SHOP), *fmt)
        assert code == 0
        assert "s3cr3t-pw-value" not in out + err
        assert "app:***@127.0.0.1" in out


def test_secrets_keygen_encrypt_then_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = _run(capsys, "secrets", "keygen")
    assert code == 0
    key = out.strip()
    monkeypatch.setenv("HEADRACE_SECRET_KEY", key)
    monkeypatch.setattr("sys.stdin", io.StringIO("hunter2-password\n"))
    code, out, _ = _run(capsys, "secrets", "encrypt")
    assert code == 0
    token = out.strip()
    assert token.startswith("enc:") and "hunter2" not in token
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(SHOP.read_text().replace("${MYSQL_PASSWORD}", token))
    code, out, err = _run(capsys, "config", "show", "-f", str(pipeline))
    assert code == 0
    assert "hunter2-password" not in out + err


def test_secrets_encrypt_without_key_is_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEADRACE_SECRET_KEY", raising=False)
    code, _, err = _run(capsys, "secrets", "encrypt", "value")
    assert code == 2
    assert "HEADRACE_SECRET_KEY is not set" in err and "secrets keygen" in err


def test_secrets_encrypt_with_a_bad_key_is_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADRACE_SECRET_KEY", "not-a-key")
    code, _, err = _run(capsys, "secrets", "encrypt", "value")
    assert code == 2
    assert "not-a-key" not in err
    assert generate_key() != generate_key()


def test_parser_builds() -> None:
    assert build_parser().prog == "headrace"


def test_run_with_a_typo_exits_2_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYSQL_PASSWORD", "s3cr3t-pw-value")
    bad = tmp_path / "pipeline.yaml"
    bad.write_text(SHOP.read_text().replace("collection: orders", "colection: orders"))
    code, out, err = _run(capsys, "run", "-f", str(bad), "--until-idle")
    assert code == 2
    assert "sinks.orders_mongo.colection: unknown key (did you mean 'collection'?)" in err
    assert "[run] started" not in out
