"""CAPTCHA images rendered on the server with Pillow (no third-party service): characters from an
alphabet without look-alikes (no 0/O, 1/I/L), each at its own offset and angle, over noise lines."""

from __future__ import annotations

import base64
import io
import random
import secrets

from PIL import Image, ImageDraw, ImageFont

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LENGTH = 6
SIZE = (240, 80)


def new_text() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def render_png(text: str) -> bytes:
    rng = random.Random(secrets.randbits(64))
    image = Image.new("RGB", SIZE, (245, 245, 240))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=38)
    for _ in range(8):
        points = [(rng.randrange(SIZE[0]), rng.randrange(SIZE[1])) for _ in range(2)]
        draw.line(points, fill=(rng.randrange(90, 200),) * 3, width=2)
    step = SIZE[0] // (len(text) + 1)
    for index, char in enumerate(text):
        glyph = Image.new("RGBA", (48, 56), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((6, 4), char, font=font, fill=(rng.randrange(80), rng.randrange(80), 120))
        glyph = glyph.rotate(rng.uniform(-25, 25), resample=Image.Resampling.BICUBIC, expand=False)
        image.paste(glyph, (step // 2 + index * step + rng.randrange(-4, 5), rng.randrange(4, 22)), glyph)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def data_url(text: str) -> str:
    return "data:image/png;base64," + base64.b64encode(render_png(text)).decode()
