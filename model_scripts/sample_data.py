"""Write a small synthetic dataset in the Udacity ``dogImages`` layout.

    python model_scripts/sample_data.py OUT_DIR --classes 5 --per-class 20 --size 64 --seed 0

produces ``OUT_DIR/{train,valid,test}/NNN.Breed_Name/*.jpg`` with the real breed
folder names (the first ``--classes`` of the 133). Each class is a distinct
combination of hue, shape and texture, drawn at a random position and scale on
a noisy random background, so a CNN has to learn something (colour alone is
jittered, shapes vary in size and place) yet reaches high accuracy in a few
epochs. The tests and the offline demo train on it; the real dogImages works
the same way because the scripts assume nothing beyond the folder layout.
"""

from __future__ import annotations

import argparse
import colorsys
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

BREED_FOLDERS: tuple[str, ...] = (
    "001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier", "004.Akita",
    "005.Alaskan_malamute", "006.American_eskimo_dog", "007.American_foxhound",
    "008.American_staffordshire_terrier", "009.American_water_spaniel",
    "010.Anatolian_shepherd_dog", "011.Australian_cattle_dog", "012.Australian_shepherd",
    "013.Australian_terrier", "014.Basenji", "015.Basset_hound", "016.Beagle",
    "017.Bearded_collie", "018.Beauceron", "019.Bedlington_terrier", "020.Belgian_malinois",
    "021.Belgian_sheepdog", "022.Belgian_tervuren", "023.Bernese_mountain_dog",
    "024.Bichon_frise", "025.Black_and_tan_coonhound", "026.Black_russian_terrier",
    "027.Bloodhound", "028.Bluetick_coonhound", "029.Border_collie", "030.Border_terrier",
    "031.Borzoi", "032.Boston_terrier", "033.Bouvier_des_flandres", "034.Boxer",
    "035.Boykin_spaniel", "036.Briard", "037.Brittany", "038.Brussels_griffon",
    "039.Bull_terrier", "040.Bulldog", "041.Bullmastiff", "042.Cairn_terrier",
    "043.Canaan_dog", "044.Cane_corso", "045.Cardigan_welsh_corgi",
    "046.Cavalier_king_charles_spaniel", "047.Chesapeake_bay_retriever", "048.Chihuahua",
    "049.Chinese_crested", "050.Chinese_shar-pei", "051.Chow_chow", "052.Clumber_spaniel",
    "053.Cocker_spaniel", "054.Collie", "055.Curly-coated_retriever", "056.Dachshund",
    "057.Dalmatian", "058.Dandie_dinmont_terrier", "059.Doberman_pinscher",
    "060.Dogue_de_bordeaux", "061.English_cocker_spaniel", "062.English_setter",
    "063.English_springer_spaniel", "064.English_toy_spaniel", "065.Entlebucher_mountain_dog",
    "066.Field_spaniel", "067.Finnish_spitz", "068.Flat-coated_retriever", "069.French_bulldog",
    "070.German_pinscher", "071.German_shepherd_dog", "072.German_shorthaired_pointer",
    "073.German_wirehaired_pointer", "074.Giant_schnauzer", "075.Glen_of_imaal_terrier",
    "076.Golden_retriever", "077.Gordon_setter", "078.Great_dane", "079.Great_pyrenees",
    "080.Greater_swiss_mountain_dog", "081.Greyhound", "082.Havanese", "083.Ibizan_hound",
    "084.Icelandic_sheepdog", "085.Irish_red_and_white_setter", "086.Irish_setter",
    "087.Irish_terrier", "088.Irish_water_spaniel", "089.Irish_wolfhound",
    "090.Italian_greyhound", "091.Japanese_chin", "092.Keeshond", "093.Kerry_blue_terrier",
    "094.Komondor", "095.Kuvasz", "096.Labrador_retriever", "097.Lakeland_terrier",
    "098.Leonberger", "099.Lhasa_apso", "100.Lowchen", "101.Maltese", "102.Manchester_terrier",
    "103.Mastiff", "104.Miniature_schnauzer", "105.Neapolitan_mastiff", "106.Newfoundland",
    "107.Norfolk_terrier", "108.Norwegian_buhund", "109.Norwegian_elkhound",
    "110.Norwegian_lundehund", "111.Norwich_terrier", "112.Nova_scotia_duck_tolling_retriever",
    "113.Old_english_sheepdog", "114.Otterhound", "115.Papillon", "116.Parson_russell_terrier",
    "117.Pekingese", "118.Pembroke_welsh_corgi", "119.Petit_basset_griffon_vendeen",
    "120.Pharaoh_hound", "121.Plott", "122.Pointer", "123.Pomeranian", "124.Poodle",
    "125.Portuguese_water_dog", "126.Saint_bernard", "127.Silky_terrier",
    "128.Smooth_fox_terrier", "129.Tibetan_mastiff", "130.Welsh_springer_spaniel",
    "131.Wirehaired_pointing_griffon", "132.Xoloitzcuintli", "133.Yorkshire_terrier",
)  # fmt: skip

SPLITS = ("train", "valid", "test")
SHAPES = ("ellipse", "rectangle", "triangle", "cross")
TEXTURES = ("solid", "stripes", "dots")
_GOLDEN_RATIO = (1 + 5**0.5) / 2


def class_style(class_index: int) -> tuple[float, str, str]:
    """(hue, shape, texture) of a class: hues spread by the golden ratio, shapes and textures cycle."""
    hue = (class_index / _GOLDEN_RATIO) % 1.0
    shape = SHAPES[class_index % len(SHAPES)]
    texture = TEXTURES[(class_index // len(SHAPES)) % len(TEXTURES)]
    return hue, shape, texture


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def _shape_mask(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A white-on-black mask of ``shape`` at a random scale, position and rotation."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    radius = rng.uniform(0.22, 0.38) * size
    cx = rng.uniform(radius, size - radius)
    cy = rng.uniform(radius, size - radius)
    angle = rng.uniform(0, 2 * math.pi)
    if shape == "ellipse":
        draw.ellipse((cx - radius, cy - radius * 0.7, cx + radius, cy + radius * 0.7), fill=255)
    elif shape == "rectangle":
        draw.rectangle((cx - radius, cy - radius * 0.8, cx + radius, cy + radius * 0.8), fill=255)
    elif shape == "triangle":
        corners = [angle + k * 2 * math.pi / 3 for k in range(3)]
        points = [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in corners]
        draw.polygon(points, fill=255)
    else:  # cross
        arm = radius * 0.35
        draw.rectangle((cx - radius, cy - arm, cx + radius, cy + arm), fill=255)
        draw.rectangle((cx - arm, cy - radius, cx + arm, cy + radius), fill=255)
    return mask


def _texture(texture: str, size: int, base: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """An HxWx3 float pattern in the class colour: flat, striped or dotted."""
    pattern = np.empty((size, size, 3), dtype=np.float32)
    pattern[:] = base
    if texture == "solid":
        return pattern
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    period = max(3.0, size / rng.uniform(5, 8))
    if texture == "stripes":
        marks = ((xs + ys + rng.uniform(0, period)) % period) < period / 2
    else:
        marks = (((xs % period) - period / 2) ** 2 + ((ys % period) - period / 2) ** 2) < (period / 3.5) ** 2
    pattern[marks] *= 0.35
    return pattern


def render_image(class_index: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One random RGB image of class ``class_index``."""
    hue, shape, texture = class_style(class_index)
    background_color = np.array(_rgb(rng.uniform(0, 1), rng.uniform(0, 0.3), rng.uniform(0.3, 0.9)))
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[:] = background_color
    canvas += rng.normal(0, 18, size=canvas.shape)
    color = _rgb(hue + rng.normal(0, 0.015), rng.uniform(0.65, 1.0), rng.uniform(0.65, 1.0))
    mask = np.asarray(_shape_mask(shape, size, rng), dtype=np.float32)[..., None] / 255.0
    canvas = canvas * (1 - mask) + _texture(texture, size, color, rng) * mask
    canvas += rng.normal(0, 8, size=canvas.shape)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")


def default_eval_count(per_class_train: int) -> int:
    """Valid/test images per class for a 70/15/15 split, at least 2."""
    return max(2, round(per_class_train * 15 / 70))


def generate(
    out_dir: str | Path,
    classes: int = 5,
    per_class_train: int = 20,
    size: int = 64,
    seed: int = 0,
    per_class_eval: int | None = None,
) -> Path:
    """Write the dataset under ``out_dir`` and return it; the same arguments give the same files."""
    if not 1 <= classes <= len(BREED_FOLDERS):
        raise ValueError(f"classes must be between 1 and {len(BREED_FOLDERS)}, got {classes}")
    if per_class_train < 1 or size < 16:
        raise ValueError("per_class_train must be >= 1 and size >= 16")
    eval_count = default_eval_count(per_class_train) if per_class_eval is None else per_class_eval
    counts = {"train": per_class_train, "valid": eval_count, "test": eval_count}
    root = Path(out_dir)
    rng = np.random.default_rng(seed)
    for split in SPLITS:
        for class_index, folder in enumerate(BREED_FOLDERS[:classes]):
            class_dir = root / split / folder
            class_dir.mkdir(parents=True, exist_ok=True)
            breed = folder.split(".", 1)[1]
            for number in range(counts[split]):
                image = render_image(class_index, size, rng)
                image.save(class_dir / f"{breed}_{number:05d}.jpg", "JPEG", quality=90)
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--classes", type=int, default=5, help="number of breeds (1..133)")
    parser.add_argument("--per-class", type=int, default=20, help="training images per class")
    parser.add_argument(
        "--per-class-eval", type=int, default=None, help="valid and test images per class (default ~15/70)"
    )
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = generate(args.out_dir, args.classes, args.per_class, args.size, args.seed, args.per_class_eval)
    print(f"wrote {args.classes} classes to {root}")


if __name__ == "__main__":
    main()
