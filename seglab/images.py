"""Reading a user's image file as the 8-bit pixels a model expects, with one declared
policy for every mode Pillow can open, so that no image is silently misread.

- ``L`` (8-bit grey), ``RGB``, ``RGBX``: used as stored.
- ``1`` (black and white): black 0, white 255.
- ``P`` (palette): each index replaced by its palette colour.
- ``RGBA``, ``LA``, ``PA``, ``RGBa``: alpha dropped; the stored colours are used.
- ``CMYK``, ``YCbCr``, ``HSV``: converted to RGB by Pillow.
- ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (16-bit): scaled to 8 bits, ``round(v * 255 / 65535)``.
- ``I`` (32-bit integers): read as 16-bit (0 to 65535) and scaled likewise; values outside
  that range are refused.
- ``F`` (floats), ``LAB``, ``La`` and any other mode: refused, with no one right 8-bit reading.

A model with 3 input channels gets grey images copied into R, G and B; a model with one
channel gets colour images as Pillow's luma (ITU-R 601-2). A file with several frames
(GIF, TIFF) gives its first frame. EXIF orientation is not applied: pixels are read as
stored, as in the data sets. An image with more than :data:`MAX_PIXELS` pixels is refused
before it is decoded (a few bytes of header can declare gigabytes of pixels).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import SeglabError

MAX_PIXELS = 50_000_000  # about 8700x5800: larger images would take gigabytes of logits
AS_STORED = {"L", "RGB", "RGBX", "1", "P", "RGBA", "LA", "PA", "RGBa", "CMYK", "YCbCr", "HSV"}
SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageRefused(SeglabError):
    """An image file seglab cannot read correctly; the message says why (not which file)."""


def image_array(image: Image.Image, channels: int) -> np.ndarray:
    """The pixels of a decoded PIL image as uint8 ``[H, W, channels]`` (1 or 3), following
    the module's policy; :class:`ImageRefused` for a mode it refuses."""
    mode = image.mode
    if mode in SIXTEEN_BIT:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageRefused(f"an image of Pillow mode {mode} with values from {values.min()} to "
                               f"{values.max()}, outside the 16-bit range; save it as an 8- or 16-bit PNG")
        image = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")
    elif mode not in AS_STORED:
        raise ImageRefused(f"Pillow mode {mode} has no one right 8-bit reading; save the image as an "
                           f"8-bit RGB or grey PNG")
    elif mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # then its alpha is dropped, as for every mode with alpha
    array = np.asarray(image.convert("RGB" if channels == 3 else "L"))
    return array[:, :, None] if array.ndim == 2 else array


def read_image_file(path: str | os.PathLike, channels: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Open, check the size of, decode and convert one image file to uint8
    ``[H, W, channels]``. Every failure is :class:`ImageRefused` with the reason."""
    with warnings.catch_warnings():  # Pillow's size warning: the limit below says it in one line
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageRefused(f"{width}x{height} is {width * height:,} pixels, above the limit of "
                                       f"{max_pixels:,} per image; downscale it first")
                if width == 0 or height == 0:
                    raise ImageRefused("the image has no pixels (0 width or height)")
                image.load()
                return image_array(image, channels)
        except ImageRefused:
            raise
        except Image.DecompressionBombError:
            raise ImageRefused(f"its header declares more than {max_pixels:,} pixels, the limit per image; "
                               f"downscale it first") from None
        except UnidentifiedImageError:
            raise ImageRefused("not an image (Pillow recognises no image format in it)") from None
        except FileNotFoundError:
            raise ImageRefused("the file does not exist") from None
        except MemoryError:
            raise ImageRefused("too large to decode in this machine's memory") from None
        except Exception as err:  # Pillow's decoders raise many types on malformed files
            detail = (str(err).strip().splitlines() or [""])[0][:120]
            raise ImageRefused(f"not a readable image ({type(err).__name__}{': ' + detail if detail else ''})") from None
