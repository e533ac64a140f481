"""Process settings from HEADRACE_* environment variables."""

from __future__ import annotations

from headrace.config import Settings, generate_key


def test_settings_from_environment(monkeypatch, tmp_path):
    for name in ("HEADRACE_PIPELINE", "HEADRACE_SECRET_KEY", "HEADRACE_STACK_DIR"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings()
    assert str(defaults.pipeline) == "pipeline.yaml"
    assert str(defaults.stack_dir) == ".stack"
    assert defaults.secret_key is None
    key = generate_key()
    monkeypatch.setenv("HEADRACE_PIPELINE", str(tmp_path / "p.yaml"))
    monkeypatch.setenv("HEADRACE_SECRET_KEY", key)
    monkeypatch.setenv("HEADRACE_STACK_DIR", "/var/stack")
    settings = Settings()
    assert settings.pipeline == tmp_path / "p.yaml"
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == key
    assert str(settings.stack_dir) == "/var/stack"
    assert key not in repr(settings)
