"""QR codes in and out: decode screenshots with zxing-cpp, draw codes with qrcode (terminal or PNG)."""

from __future__ import annotations

import io

from keyctl.errors import InvalidInput

_PNG, _JPEG = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
QUIET_ZONE = 2  # modules of white border in the terminal; phone scanners read 2 fine


def looks_like_image(data: bytes) -> bool:
    return data.startswith((_PNG, _JPEG))


def decode_image(data: bytes, source: str) -> list[str]:
    """The texts of every QR code in a PNG/JPEG image."""
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError):
        raise InvalidInput(
            f"{source} is not a readable PNG or JPEG image", "give a PNG or JPEG file"
        ) from None
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    texts = [barcode.text for barcode in found if barcode.text]
    if not texts:
        raise InvalidInput(
            f"no QR code found in {source}", "crop the screenshot to the QR code, or use --uri / --secret"
        )
    return texts


def _qr(text: str, border: int) -> object:
    import qrcode

    code = qrcode.QRCode(border=border, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(text)
    code.make(fit=True)
    return code


def matrix(text: str, border: int = QUIET_ZONE) -> list[list[bool]]:
    """The modules of the QR code of ``text`` (True = dark), quiet zone included."""
    rows: list[list[bool]] = _qr(text, border).get_matrix()  # type: ignore[attr-defined]
    return rows


def halfblocks(modules: list[list[bool]], invert: bool = False) -> list[str]:
    """Draw two module rows per text line with half-block characters.

    By default the characters light up where the code is light (right for dark terminal themes, where
    drawn characters are light); ``invert`` draws the dark modules instead (light themes).
    """
    lit = [[module == invert for module in row] for row in modules]
    if len(lit) % 2:
        lit.append([not invert] * len(lit[0]))  # pad with a quiet-zone row
    glyphs = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
    return [
        "".join(glyphs[top, bottom] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(lit[::2], lit[1::2], strict=True)
    ]


def png(text: str) -> bytes:
    """A PNG of the QR code of ``text`` (standard 4-module quiet zone)."""
    image = _qr(text, border=4).make_image()  # type: ignore[attr-defined]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
