"""Shared by the browser tests: Debian's chromium, its launch flags, and a tiny PNG reader
(so a screenshot can be checked for content without adding an imaging library)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags chromium keeps dialing out of this closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIP_REASON = (
    "Debian's chromium is not at /usr/bin/chromium (apt-get install -y chromium); .ci/run installs it"
)
# Every browser test module: `pytestmark = NEEDS_CHROMIUM`.
NEEDS_CHROMIUM = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)]


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """A tiny PNG decoder (8-bit RGB/RGBA/gray, non-interlaced): (width, height, rows of raw pixel bytes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0 and colour in (0, 2, 4, 6), header
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    raw, stride = zlib.decompress(idat), width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def distinct_colours(png: bytes) -> int:
    width, _, rows = png_pixels(png)
    bpp = len(rows[0]) // width
    return len({row[i : i + bpp] for row in rows for i in range(0, len(row), bpp)})


def _png(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def check_png_decoder_undoes_every_filter():
    """Rows of known RGB pixels, each stored with a different PNG filter (0-4), decode back."""
    rows = [bytes([10 * y + x % 7, 200 - 9 * x, (x * y * 31) % 256]) for y in range(5) for x in range(4)]
    rows = [b"".join(rows[y * 4 : (y + 1) * 4]) for y in range(5)]
    bpp, raw, prev = 3, b"", bytes(12)
    for kind, line in enumerate(rows):  # row y uses filter type y
        out = bytearray()
        for i, value in enumerate(line):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) >> 1
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            out.append((value - pred) & 255)
        raw += bytes([kind]) + bytes(out)
        prev = line
    assert png_pixels(_png(4, 5, raw)) == (4, 5, rows)
    one_colour = b"".join(b"\x00" + bytes([250, 250, 250]) * 4 for _ in range(5))
    assert distinct_colours(_png(4, 5, one_colour)) == 1


# ---- console steps more than one browser test plays --------------------------------------------

WELCOME = "/console/content/gad/welcome"


def upload_and_map_odd_csv(page, leads_file: Path) -> None:
    """Upload ODD_CSV (test_console_leads_browser) on the Import page, map its odd headers to
    fields, and check again: the dry run's counts are on the page afterwards."""
    from playwright.sync_api import expect

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Import").click()
    page.get_by_label("A .csv or .xlsx file").set_input_files(leads_file)
    page.get_by_role("button", name="Upload and check").click()
    expect(page.locator("#needs-email")).to_contain_text("No column is read as the email address")
    for column, field in [
        ("Field for column 1, Electronic mail", "email"),
        ("Field for column 2, Given", "first_name"),
        ("Field for column 4, What worries you", "anxiety_type"),
        ("Field for column 5, Consent to email?", "consent"),
    ]:
        page.get_by_label(column).select_option(field)
    page.get_by_role("button", name="Check again with these columns").click()


def coordinator_cannot_approve(context, page, base_url: str) -> None:
    """A coordinator's content page has no approve button, and a forged approval POST gets 403."""
    from playwright.sync_api import expect

    page.goto(base_url + WELCOME)
    expect(page.get_by_role("heading", name="Approval", exact=True)).to_be_visible()
    assert page.get_by_role("button", name="Approve this email").count() == 0
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    forged = context.request.post(
        base_url + WELCOME + "/approve",
        form={"csrf_token": token, "attest": "yes", "content_hash": "0" * 64},
    )
    assert forged.status == 403
