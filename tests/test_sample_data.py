"""The sample-data generator writes the dogImages layout with real breed names, reproducibly."""

from __future__ import annotations

import re

import pytest
from PIL import Image
from sample_data import BREED_FOLDERS, SPLITS, class_style, generate, main


def test_breed_list_is_the_133_numbered_dogimages_folders():
    assert len(BREED_FOLDERS) == 133 == len(set(BREED_FOLDERS))
    for number, folder in enumerate(BREED_FOLDERS, start=1):
        assert re.fullmatch(rf"{number:03d}\.[A-Z][A-Za-z_-]+", folder), folder
    assert BREED_FOLDERS[0] == "001.Affenpinscher" and BREED_FOLDERS[-1] == "133.Yorkshire_terrier"


def test_every_class_has_its_own_style():
    styles = [class_style(index) for index in range(133)]
    assert len({(round(hue, 3), shape, texture) for hue, shape, texture in styles}) == 133


def test_layout_counts_and_images(tmp_path):
    root = generate(tmp_path / "data", classes=3, per_class_train=7, size=32, seed=1)
    for split in SPLITS:
        folders = sorted(path.name for path in (root / split).iterdir())
        assert folders == list(BREED_FOLDERS[:3])
    assert len(list((root / "train" / "002.Afghan_hound").glob("*.jpg"))) == 7
    assert len(list((root / "valid" / "002.Afghan_hound").glob("*.jpg"))) == 2  # ~15/70 of 7, at least 2
    with Image.open(next((root / "test" / "003.Airedale_terrier").glob("*.jpg"))) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (32, 32))


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    first = generate(tmp_path / "a", classes=2, per_class_train=3, size=24, seed=5)
    second = generate(tmp_path / "b", classes=2, per_class_train=3, size=24, seed=5)
    third = generate(tmp_path / "c", classes=2, per_class_train=3, size=24, seed=6)
    relative = sorted(path.relative_to(first) for path in first.rglob("*.jpg"))
    assert relative == sorted(path.relative_to(second) for path in second.rglob("*.jpg"))
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in relative)
    assert any((first / name).read_bytes() != (third / name).read_bytes() for name in relative)


def test_cli(tmp_path, capsys):
    main(
        [str(tmp_path / "cli"), "--classes", "2", "--per-class", "4", "--per-class-eval", "3", "--size", "24"]
    )
    assert len(list((tmp_path / "cli" / "test" / "001.Affenpinscher").glob("*.jpg"))) == 3
    assert "wrote 2 classes" in capsys.readouterr().out


@pytest.mark.parametrize("classes", [0, 134])
def test_rejects_impossible_class_counts(tmp_path, classes):
    with pytest.raises(ValueError, match="classes must be between 1 and 133"):
        generate(tmp_path, classes=classes)
