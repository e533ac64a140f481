"""``headrace gateway token``: a token the file's gateway.auth accepts, the pipeline file
before or after the options; the usage errors and a file without auth exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.auth import Authenticator
from headrace.config import load_pipeline
from headrace_cli.main import main

SECRET = "t" * 40


def write(tmp_path: Path, auth: bool = True) -> Path:
    gateway: dict[str, object] = {"topics": {"orders": {}}}
    if auth:
        gateway["auth"] = {"secret": SECRET, "issuer": "local", "audience": "gw"}
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "p", "kafka": {"bootstrap_servers": "127.0.0.1:9092"}, "gateway": gateway}
        )
    )
    return path


@pytest.mark.parametrize("file_last", [True, False])
def test_token_is_accepted_by_the_files_auth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], file_last: bool
) -> None:
    path = write(tmp_path)
    options = ["--sub", "svc", "--scope", "publish:orders", "--ttl", "10m"]
    argv = (
        ["gateway", "token", *options, str(path)]
        if file_last
        else ["gateway", "-f", str(path), "token", *options]
    )
    assert main(argv) == 0
    token = capsys.readouterr().out.strip()
    auth = load_pipeline(path).gateway
    assert auth is not None and auth.auth is not None
    checker = Authenticator(auth.auth)
    principal = checker.authenticate(f"Bearer {token}")
    assert principal.sub == "svc"
    checker.authorize(principal, "orders")


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    for argv, message in (
        (["gateway", "token", "--sub", "svc", str(path)], "at least one --scope"),
        (["gateway", "token", "--scope", "publish:orders", str(path)], "needs --sub"),
        (["gateway", "token", "--sub", "s", "--scope", "x", "--ttl", "soon", str(path)], "--ttl"),
        (["gateway", "--sub", "svc", str(path)], "options of `headrace gateway token`"),
        (["gateway", "token", "--port", "1", str(path)], "options of serving"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


def test_a_file_without_auth_cannot_mint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, auth=False)
    assert main(["gateway", "token", "--sub", "s", "--scope", "publish:orders", str(path)]) == 2
    assert "no gateway.auth in the pipeline file" in capsys.readouterr().err
