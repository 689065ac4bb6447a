"""Photo preparation for the model: orientation, size cap, content key, bad input."""

import io

import pytest
from PIL import Image

from rrg_local.library.images import ImageError
from rrg_local.vlm.images import prepare
from rrg_local.vlm.protocol import ImageRef
from tests.conftest import draw_photo, exif_bytes


def jpeg(img, orientation=1) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif_bytes(orientation=orientation))
    return buf.getvalue()


def test_orientation_is_applied_and_size_capped():
    data = jpeg(draw_photo(1, (800, 400)), orientation=6)
    p = prepare(ImageRef(data), max_side=200, max_pixels=10**8)
    assert (p.width, p.height) == (100, 200)
    assert len(p.rgb) == 100 * 200 * 3


def test_key_depends_on_pixels_not_on_the_container(tmp_path):
    img = draw_photo(2, (128, 96))
    (tmp_path / "a.png").write_bytes(b"")
    img.save(tmp_path / "a.png")
    from_file = prepare(ImageRef(tmp_path / "a.png"), max_side=512, max_pixels=10**8)
    from_pil = prepare(ImageRef(img), max_side=512, max_pixels=10**8)
    assert from_file.key == from_pil.key
    other = prepare(ImageRef(draw_photo(3, (128, 96))), max_side=512, max_pixels=10**8)
    assert other.key != from_pil.key


def test_bombs_and_junk_are_refused():
    with pytest.raises(ImageError, match="too large"):
        prepare(ImageRef(jpeg(Image.new("RGB", (2000, 2000)))), max_side=512, max_pixels=1_000_000)
    with pytest.raises(ImageError, match="not an image"):
        prepare(ImageRef(b"hello"), max_side=512, max_pixels=10**8)
