"""Process settings read from the environment (pydantic-settings).

- ``HEADRACE_PIPELINE``: the pipeline file (default ``pipeline.yaml``);
- ``HEADRACE_SECRET_KEY``: the Fernet key(s) for ``enc:`` values (comma-separated for rotation);
- ``HEADRACE_STACK_DIR``: where the local stack keeps its data and env file (default ``.stack``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """headrace settings from ``HEADRACE_*`` environment variables (unknown ones are ignored)."""

    model_config = SettingsConfigDict(env_prefix="HEADRACE_", extra="ignore", frozen=True)

    pipeline: Path = Field(
        default=Path("pipeline.yaml"), description="Pipeline file (HEADRACE_PIPELINE)."
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Fernet key(s) for enc: values (HEADRACE_SECRET_KEY)."
    )
    stack_dir: Path = Field(
        default=Path(".stack"), description="Local stack directory (HEADRACE_STACK_DIR)."
    )
