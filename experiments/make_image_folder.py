"""A small two-class image folder (noisy horizontal vs vertical stripes, 3×32×32 PNGs) in the
layout ``budgetsearch run --dataset DIR`` takes (train/ and val/, one subfolder per class): data
a session makes where nothing can be downloaded (the GPU session, experiments/gpu_session.sh).

    python experiments/make_image_folder.py DIR [--per-class N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def stripes(label: str, rng: np.random.Generator, side: int = 32) -> np.ndarray:
    """One RGB image (uint8, H×W×3) of stripes of a random period, under strong noise."""
    period = int(rng.integers(3, 8))
    line = ((np.arange(side) // period) % 2).astype(float)
    image = np.broadcast_to(line[:, None] if label == "horizontal" else line[None, :],
                            (side, side))
    noisy = image[..., None] * 0.6 + rng.normal(0.2, 0.35, (side, side, 3))
    return (np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-class", type=int, default=400, help="training images per class")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for split, count in (("train", args.per_class), ("val", max(1, args.per_class // 4))):
        for label in ("horizontal", "vertical"):
            folder = args.folder / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(stripes(label, rng)).save(folder / f"{i}.png")
    print(f"image folder: {args.folder} (2 classes, {args.per_class} training images each)")


if __name__ == "__main__":
    main()
