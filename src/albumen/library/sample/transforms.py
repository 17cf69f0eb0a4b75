"""Pixel transformations that turn one real photo into many plausible files: crop, mirror, colour, resize, rotation
for an EXIF orientation tag, and the phone screenshot frame.

Pure functions of Pillow images and plain numbers; nothing here reads or writes files or knows about the layout.
"""

from __future__ import annotations

from datetime import datetime

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from albumen.library.sample.plan import Transform

__all__ = ["MAX_BASE_SIDE", "to_base", "apply_transform", "output_size", "map_box", "store_for_orientation",
           "render_screenshot"]

MAX_BASE_SIDE = 1280  # sources larger than this (the Debian wallpapers) are reduced once, before any transform

# The stored pixels for each EXIF orientation: a viewer that applies the tag (Pillow's exif_transpose) undoes these.
_STORE = {
    1: None,
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # stored turned 90 deg counter-clockwise; tag 6 says "rotate 90 CW to view"
    8: Image.Transpose.ROTATE_270,
}


def to_base(image: Image.Image) -> Image.Image:
    """The source as RGB, no side longer than ``MAX_BASE_SIDE`` (all transforms work in these pixels)."""
    w, h = image.size
    if image.format == "JPEG" and max(w, h) >= 2 * MAX_BASE_SIDE:
        image.draft("RGB", (w // 2, h // 2))  # let libjpeg decode at half size: same result after the resize, 4x less work
    image = image.convert("RGB")
    w, h = image.size
    if max(w, h) > MAX_BASE_SIDE:
        s = MAX_BASE_SIDE / max(w, h)
        image = image.resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS)
    return image


def output_size(t: Transform) -> tuple[int, int]:
    """The upright (display) size of the transformed image."""
    l, tp, r, b = t.crop
    return max(8, round((r - l) * t.scale)), max(8, round((b - tp) * t.scale))


def apply_transform(base: Image.Image, t: Transform) -> Image.Image:
    """The upright image the viewer should see: crop -> mirror -> colour -> resize (orientation not applied)."""
    img = base.crop(t.crop)
    if t.flip:
        img = ImageOps.mirror(img)
    if t.brightness != 1.0:
        img = ImageEnhance.Brightness(img).enhance(t.brightness)
    if t.contrast != 1.0:
        img = ImageEnhance.Contrast(img).enhance(t.contrast)
    if t.grayscale:
        img = ImageOps.grayscale(img).convert("RGB")
    elif t.saturation != 1.0:
        img = ImageEnhance.Color(img).enhance(t.saturation)
    size = output_size(t)
    if size != img.size:
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return img


def map_box(box: tuple[int, int, int, int], t: Transform) -> tuple[int, int, int, int] | None:
    """Where a source-pixel box ends up in the upright transformed image (clipped), or None when cropped away."""
    l, tp, r, b = t.crop
    x0, y0, x1, y1 = max(box[0], l) - l, max(box[1], tp) - tp, min(box[2], r) - l, min(box[3], b) - tp
    if x1 <= x0 or y1 <= y0:
        return None
    if t.flip:
        x0, x1 = (r - l) - x1, (r - l) - x0
    sx = output_size(t)[0] / (r - l)
    sy = output_size(t)[1] / (b - tp)
    return round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)


def store_for_orientation(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels to store so that applying EXIF ``orientation`` shows ``upright``."""
    if orientation not in _STORE:
        raise ValueError(f"unsupported EXIF orientation {orientation} (use 1, 3, 6 or 8)")
    op = _STORE[orientation]
    return upright if op is None else upright.transpose(op)


def render_screenshot(content: Image.Image, screen: tuple[int, int], when: datetime, dark: bool) -> Image.Image:
    """A phone screen showing ``content`` full width under a status bar with the clock, like a screenshot."""
    w, h = screen
    bg, fg = ((18, 18, 20), (235, 235, 240)) if dark else ((246, 246, 248), (20, 20, 24))
    canvas = Image.new("RGB", screen, bg)
    draw = ImageDraw.Draw(canvas)
    bar = h // 22
    draw.text((w // 14, bar // 3), when.strftime("%H:%M"), fill=fg, font_size=max(10, bar // 2))
    draw.rectangle((w - w // 6, bar // 3, w - w // 14, bar - bar // 3), outline=fg, width=2)  # battery
    cw, ch = content.size
    s = w / cw
    fitted = content.resize((w, max(1, round(ch * s))), Image.Resampling.BILINEAR)
    top = max(bar * 2, (h - fitted.height) // 2)
    canvas.paste(fitted, (0, top))
    draw.rectangle((w // 3, h - h // 60 - 8, 2 * w // 3, h - h // 60), fill=fg)  # home indicator
    return canvas
