"""The image sets bundled with bitmatch, by name (a job may name one instead of listing images)."""

from fastapi import APIRouter

from codec.imagesets import IMAGE_SETS

router = APIRouter(prefix="/api/image-sets", tags=["images"])


@router.get("")
def list_image_sets() -> dict[str, list[str]]:
    """{set name: its image names}."""
    return {name: sorted(images) for name, images in IMAGE_SETS.items()}
