"""Codec packages and images as the API lists them."""

from typing import Any, Self

from server.catalog import codec_label
from server.models import Codec, Image
from server.schemas.base import Schema, iso


class CodecRecord(Schema):
    digest: str
    name: str
    precision: str
    architecture: str
    size: int
    manifest: dict[str, Any]
    created_at: str | None

    @classmethod
    def of(cls, codec: Codec) -> Self:
        return cls(
            digest=codec.digest,
            name=codec.name or codec_label(codec.manifest, codec.digest),
            precision=codec.precision,
            architecture=codec.architecture,
            size=codec.size,
            manifest=codec.manifest,
            created_at=iso(codec.created_at),
        )


class ImageRecord(Schema):
    digest: str
    name: str
    set: str | None
    width: int
    height: int
    size: int
    created_at: str | None

    @classmethod
    def of(cls, image: Image) -> Self:
        return cls(
            digest=image.digest,
            name=image.name,
            set=image.image_set,
            width=image.width,
            height=image.height,
            size=image.size,
            created_at=iso(image.created_at),
        )
