"""Shared pydantic settings for the API models: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """A Kubernetes-style object part: camelCase aliases, unknown fields refused.

    Unknown fields are refused because ``kubectl apply`` (strict field validation, its default)
    refuses them too; a typo such as ``collectCylce`` must not be silently dropped.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        strict=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The object as JSON-ready data: camelCase keys, only the fields that were given."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


class OpenApiModel(ApiModel):
    """A part that keeps fields it does not know (``x-kubernetes-preserve-unknown-fields``)."""

    model_config = ConfigDict(extra="allow")
