import io
from datetime import datetime

import pytest
from PIL import Image

from rrg_local.library.images import ImageError, hamming, make_thumbnail, open_image, phash, read_exif
from tests.conftest import draw_photo, exif_bytes


def jpeg_bytes(img, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def test_exif_date_orientation_and_camera_are_read():
    data = jpeg_bytes(draw_photo(1), exif=exif_bytes(datetime(2021, 5, 6, 7, 8, 9), 6, ("Canon", "Canon EOS R5")))
    meta = read_exif(open_image(data, max_pixels=10**8).exif)
    assert meta.taken_at == "2021-05-06T07:08:09"
    assert meta.orientation == 6
    assert meta.camera == "Canon EOS R5"


def test_missing_exif_gives_no_date_and_upright():
    meta = read_exif(open_image(jpeg_bytes(draw_photo(1)), max_pixels=10**8).exif)
    assert (meta.taken_at, meta.orientation, meta.camera) == (None, 1, None)


@pytest.mark.parametrize("orientation,expected", [(1, (64, 32)), (3, (64, 32)), (6, (32, 64)), (8, (32, 64))])
def test_thumbnail_applies_orientation(orientation, expected):
    img = draw_photo(2, (640, 320))
    assert make_thumbnail(img, 64, orientation).size == expected


def test_orientation_6_rotates_clockwise():
    img = Image.new("RGB", (40, 20), "white")
    img.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    thumb = make_thumbnail(img, 40, 6)  # displayed rotated 90 degrees clockwise: red ends up on top
    assert thumb.getpixel((10, 5))[0] > 200 and thumb.getpixel((10, 35))[1] > 200


def test_jpeg_decodes_at_reduced_scale_for_thumbnails():
    data = jpeg_bytes(draw_photo(3, (2000, 1600)))
    decoded = open_image(data, max_pixels=10**8, draft_size=320)
    assert (decoded.width, decoded.height) == (2000, 1600)
    assert decoded.image.size == (500, 400)  # 1/4 scale: the smallest that stays >= 320


def test_bomb_is_refused_before_decoding():
    data = jpeg_bytes(Image.new("RGB", (3000, 3000)))
    with pytest.raises(ImageError) as err:
        open_image(data, max_pixels=1_000_000)
    assert err.value.kind == "too_large" and "9 MP" in err.value.reason


def test_phash_survives_reencoding_and_resizing_but_separates_pictures():
    a = draw_photo(4, (640, 480))
    small = Image.open(io.BytesIO(jpeg_bytes(a.resize((320, 240)), quality=50)))
    other = draw_photo(5, (640, 480))
    assert hamming(phash(a), phash(small)) <= 4
    assert hamming(phash(a), phash(other)) > 16


def test_rgba_and_palette_images_get_a_white_background():
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert make_thumbnail(rgba, 10, 1).getpixel((5, 5)) == (255, 255, 255)
    assert make_thumbnail(draw_photo(1).convert("P"), 50, 1).mode == "RGB"
