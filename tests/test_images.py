"""The one image loader: every accepted kind gives RGB at the asked size; every bad kind names its reason."""

import numpy as np
import pytest
from conftest import encode, gradient
from PIL import Image

from pipeline.served.images import ImageError, decode, load_image, load_views
from pipeline.served.settings import Outputs, ServingSettings

TEST_MAX_PIXELS = 1_000_000


def test_every_accepted_kind_loads_as_rgb(good_images):
    for kind, data in good_images.items():
        array = load_image(data, 32, max_pixels=TEST_MAX_PIXELS)
        assert array.shape == (32, 32, 3), kind
        assert array.dtype == np.uint8, kind


@pytest.mark.parametrize(
    "kind, reason",
    [("empty", "empty"), ("not an image", "not an image"), ("truncated", "truncated"), ("truncated header", "truncated"), ("pixels", "over the limit")],
)
def test_bad_input_names_the_problem(bad_images, kind, reason):
    with pytest.raises(ImageError, match=reason):
        load_image(bad_images[kind], 32, max_pixels=TEST_MAX_PIXELS)


def test_exif_orientation_is_applied(good_images):
    assert decode(good_images["jpeg_exif_rotated"]).size == (30, 40)  # stored 40x30, shown upright


def test_transparent_pixels_become_white_not_black(good_images):
    # Half-transparent pixels over white are lighter than the opaque image's darkest value (0).
    assert np.asarray(decode(good_images["png_rgba"])).min() >= 127


def test_16bit_is_scaled_not_clipped(good_images):
    gray = np.asarray(decode(good_images["png_16bit"]))[..., 0]
    assert 0 < gray.mean() < 255 and len(np.unique(gray)) > 100


def test_animation_gives_its_first_frame(good_images):
    first = np.asarray(decode(good_images["gif_animated"]))
    assert not (first[..., 0] > 200).all()  # the second frame is solid red; the first is not


def test_a_sharp_image_is_brought_down_to_the_training_resolution_first():
    """source_size: what training saw (32x32 CIFAR) is what serving shows; images at that size pass unchanged."""
    stripes = np.zeros((224, 224, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: detail a 32-pixel source never had
    sharp = encode(Image.fromarray(stripes), "PNG")
    assert load_image(sharp, 224).std() > 100  # at its own size, the stripes pass as they are
    assert load_image(sharp, 224, source_size=32).std() < 10  # brought down to 32 first: a flat grey
    small = encode(gradient(32, 32), "PNG")
    np.testing.assert_array_equal(load_image(small, 224, source_size=32), load_image(small, 224))


def test_both_views_of_a_photo_are_what_matched_and_direct_give_alone():
    """photo_resize=both: one decode, then the matched view (down to the training resolution first) and the direct one."""
    stripes = np.zeros((224, 224, 3), np.uint8)
    stripes[:, ::2] = 255
    sharp = encode(Image.fromarray(stripes), "PNG")  # a JPEG decodes at the sharpest view's draft scale: close, not equal
    views = load_views(sharp, 224, [32, None])
    assert views.shape == (2, 224, 224, 3)
    np.testing.assert_array_equal(views[0], load_image(sharp, 224, source_size=32))
    np.testing.assert_array_equal(views[1], load_image(sharp, 224))
    assert views[0].std() < 10 < 100 < views[1].std()


def test_serving_settings_name_the_views_and_outputs_average_over_them():
    def views(resize, source_size=32):
        return ServingSettings(
            classes=["a", "b"], input_size=224, source_size=source_size, max_pixels=10**6, weights="w", weights_meaningful=True,
            temperature=1.0, neither_score="other_probability", reject_threshold=0.5, accept_rate=1.0, photo_resize=resize,
        ).view_sizes

    assert (views("matched"), views("direct"), views("both")) == ([32], [None], [32, None])
    assert views("both", source_size=None) == [None]  # training images as sharp as the input: one view
    two = Outputs(np.array([0.2, 0.4, 0.9, 0.7]), np.array([0.0, 1.0, 0.5, 0.5]), np.arange(8.0).reshape(4, 2))
    mean = two.mean_over_views(2)  # image after image: (0.2, 0.4) are the first image's views
    np.testing.assert_allclose(mean.probability, [0.3, 0.8])
    np.testing.assert_allclose(mean.other_probability, [0.5, 0.5])
    np.testing.assert_allclose(mean.embedding, [[1.0, 2.0], [5.0, 6.0]])
