"""The app icons of Vinh Smart (PNG, for the web manifest), drawn from the favicon's design.

``favicon.svg`` is a dark-blue rounded square with "IOC" in white; the PNGs repeat it with
Pillow, in the vendored Be Vietnam Pro Bold. They are committed under ``static/icons/``;
run ``python -m ioc.web.icons`` to draw them again after the favicon changes.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

STATIC_DIR = Path(__file__).resolve().parent / "static"
ICONS_DIR = STATIC_DIR / "icons"
FONT = STATIC_DIR / "vendor" / "be-vietnam-pro" / "files" / "be-vietnam-pro-latin-700-normal.woff2"
BRAND = (0x0B, 0x2E, 0x4F, 255)
WHITE = (255, 255, 255, 255)
#: The icons the manifest lists: file name, size in pixels, maskable (full bleed, safe zone).
ICONS = (("icon-192.png", 192, False), ("icon-512.png", 512, False), ("icon-maskable-512.png", 512, True))


def draw_icon(size: int, *, maskable: bool = False) -> Image.Image:
    """The icon at ``size`` × ``size`` pixels; a maskable one fills the square and keeps the text
    inside the central 80 % that every launcher shape shows."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if maskable:
        draw.rectangle((0, 0, size, size), fill=BRAND)
        text_size = round(size * 22 / 64 * 0.8)
    else:
        draw.rounded_rectangle((0, 0, size - 1, size - 1), radius=round(size * 12 / 64), fill=BRAND)
        text_size = round(size * 22 / 64)
    font = ImageFont.truetype(str(FONT), text_size)
    draw.text((size / 2, size / 2), "IOC", font=font, fill=WHITE, anchor="mm")
    return image


def main() -> None:
    ICONS_DIR.mkdir(parents=True, exist_ok=True)
    for name, size, maskable in ICONS:
        draw_icon(size, maskable=maskable).save(ICONS_DIR / name, optimize=True)
        print(ICONS_DIR / name)


if __name__ == "__main__":
    main()
