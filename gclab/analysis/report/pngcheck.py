"""A small PNG decoder (zlib + numpy, no imaging library) to check that a figure is not blank.

Handles 8-bit greyscale/RGB/RGBA, non-interlaced — what vl-convert and Chromium write. Sub
and Up filters (vl-convert uses Sub) are vectorised; Average and Paeth fall back to a
per-pixel loop, which is slow but correct.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _chunks(data: bytes) -> tuple[tuple, list[bytes]]:
    """(the IHDR fields, the IDAT bodies in order) of a PNG file's bytes."""
    if data[:8] != SIGNATURE:
        raise ValueError("not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG without IHDR")
    return header, idat


def png_pixels(data: bytes | Path | str) -> np.ndarray:
    """Decode to an (h, w, channels) uint8 array."""
    if not isinstance(data, (bytes, bytearray)):
        data = Path(data).read_bytes()
    header, idat = _chunks(data)
    w, h, depth, color, _, _, interlace = header
    if depth != 8 or color not in CHANNELS or interlace:
        raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {color}, interlace {interlace})")
    bpp = CHANNELS[color]
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(h, 1 + w * bpp)
    filters, rows = raw[:, 0], raw[:, 1:].astype(np.int64)
    out = np.zeros((h, w * bpp), dtype=np.int64)
    prev = np.zeros(w * bpp, dtype=np.int64)
    for y in range(h):
        f, line = filters[y], rows[y]
        if f == 0:
            cur = line
        elif f == 1:  # Sub: running sum per channel
            cur = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1) % 256
        elif f == 2:  # Up
            cur = (line + prev) % 256
        else:
            cur = _slow_row(int(f), line, prev, bpp)
        out[y] = cur
        prev = cur
    return out.reshape(h, w, bpp).astype(np.uint8)


def _slow_row(f: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    cur = [0] * len(line)
    for i, x in enumerate(line.tolist()):
        a = cur[i - bpp] if i >= bpp else 0
        b = int(prev[i])
        c = int(prev[i - bpp]) if i >= bpp else 0
        if f == 3:
            cur[i] = (x + (a + b) // 2) % 256
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (x + pred) % 256
        else:
            raise ValueError(f"bad PNG filter {f}")
    return np.array(cur, dtype=np.int64)


def blankness(data: bytes | Path | str) -> dict:
    """Facts to judge a PNG by: size, distinct colours, pixel std, share of the modal colour."""
    px = png_pixels(data)
    packed = np.zeros(px.shape[:2], dtype=np.uint32)
    for c in range(px.shape[2]):  # one 32-bit key per pixel: a 1-D unique is fast
        packed |= px[..., c].astype(np.uint32) << (8 * c)
    colors, counts = np.unique(packed.ravel(), return_counts=True)
    return {
        "width": px.shape[1],
        "height": px.shape[0],
        "n_colors": int(len(colors)),
        "std": float(px.std()),
        "modal_share": float(counts.max() / counts.sum()),
    }


def is_blank(data: bytes | Path | str) -> bool:
    """True when every pixel is (almost) the same colour."""
    facts = blankness(data)
    return facts["n_colors"] < 3 or facts["std"] < 1.0 or facts["modal_share"] > 0.995
