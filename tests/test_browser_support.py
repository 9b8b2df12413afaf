"""The PNG reader the browser tests rely on."""

from browser_support import check_png_decoder_undoes_every_filter


def test_png_decoder_undoes_every_filter():
    check_png_decoder_undoes_every_filter()
