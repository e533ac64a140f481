"""``AwsAccess``: the keys every AWS (or AWS-compatible) connector has, validated once."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from headrace.config.base import ConfigModel, problem

__all__ = ["AwsAccess"]


class AwsAccess(ConfigModel):
    """Where an AWS service is and how to sign in to it (``headrace.clients.aws_client``)."""

    endpoint_url: str | None = Field(
        default=None, description="Service endpoint, for an AWS-compatible one (default: AWS)."
    )
    region: str | None = Field(default=None, description="AWS region (default: boto3's).")
    aws_access_key_id: str | None = Field(
        default=None, description="Access key id (default: boto3's credential chain)."
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret access key (default: boto3's credential chain)."
    )

    @model_validator(mode="after")
    def _check_credentials(self) -> AwsAccess:
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise problem("set both aws_access_key_id and aws_secret_access_key, or neither")
        return self
