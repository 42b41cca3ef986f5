"""What an image may be: the size and shape limits, in terms of the padded size the codec works on.

The codec pads an image to multiples of 64, and what it costs in memory is the padded size (about 300 bytes
per padded pixel in a worker at peak), so the limits apply there: at most 2^23 padded pixels (8 MiP: a
3840 x 2160 frame fits) and a padded aspect ratio of at most 16:1 (a 1 x 262144 strip pads to 64 x 262144).
No dependencies: the compute process of every target, and the bitstream decoder, check the same numbers.
"""

PAD = 64
MAX_PADDED_PIXELS = 2**23
MAX_ASPECT = 16


def padded_size(height: int, width: int) -> tuple[int, int]:
    return -(-height // PAD) * PAD, -(-width // PAD) * PAD


def size_problem(height: int, width: int) -> str | None:
    """Why an image of this size is refused, or None."""
    if height < 1 or width < 1:
        return f"image has zero size ({width}x{height})"
    padded_h, padded_w = padded_size(height, width)
    if padded_h * padded_w > MAX_PADDED_PIXELS:
        return (
            f"image is {width}x{height}, padded to {padded_w}x{padded_h} = {padded_h * padded_w} pixels, "
            f"over the limit of {MAX_PADDED_PIXELS} padded pixels (8 MiP)"
        )
    if max(padded_h, padded_w) > MAX_ASPECT * min(padded_h, padded_w):
        return (
            f"image is {width}x{height}, padded to {padded_w}x{padded_h}: an aspect ratio over the "
            f"{MAX_ASPECT}:1 limit"
        )
    return None
