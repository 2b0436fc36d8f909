"""Tiny fake copies of every dataset, written in the datasets' REAL published on-disk formats.

``write_fake(name, root)`` writes dataset ``name`` under the data root ``root`` and returns a
:class:`Fake` describing what a correct loader must produce (split sizes, ground truth, extra run options).
Every registered dataset must have a writer here (the tests parametrise over the registry), so adding a
dataset without a fake fails the test suite.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

NOUNS = (
    "man",
    "woman",
    "dog",
    "cat",
    "horse",
    "car",
    "street",
    "table",
    "pizza",
    "ball",
    "field",
    "boat",
)
CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


@dataclass
class Fake:
    """What the loader of a fake copy must return."""

    sizes: dict[str, int]
    seeded: bool  # split membership depends on data_seed
    has_ground_truth: bool = True
    intrinsic_mislabels: int = 0  # observed != clean in the data itself (all splits)
    unique_texts: bool = True  # every sample's observed text differs from every other's
    options: dict = field(default_factory=dict)  # extra RunConfig fields (bring-your-own data)
    skipped: int = 0  # corrupt images the loader must drop (all splits)
    extra: dict = field(default_factory=dict)


def jpeg_bytes(rng: np.random.Generator, size: int = 8, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def truncated_jpeg_bytes(rng: np.random.Generator) -> bytes:
    """The first half of a 64x64 JPEG: its header is intact (passes ``Image.open`` + ``verify``) but
    decoding the pixels raises ``OSError: image file is truncated``."""
    blob = jpeg_bytes(rng, size=64)
    return blob[: len(blob) // 2]


def write_image(
    path: Path, rng: np.random.Generator, corrupt: bool = False, truncated: bool = False
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"this is not an image"
        if corrupt
        else truncated_jpeg_bytes(rng)
        if truncated
        else jpeg_bytes(rng)
    )


def caption(i: int, rng: np.random.Generator) -> str:
    """A unique caption with two nouns of NOUNS, one of them 'dog' (so noun noise always has partners)."""
    return f"A dog next to a {NOUNS[rng.integers(3, len(NOUNS))]} in scene {i}."


def noun_tagger(texts):
    """Fake POS tagger for tests: the words of each text that are in NOUNS."""
    return [
        [w.strip(".,").lower() for w in t.split() if w.strip(".,").lower() in NOUNS] for t in texts
    ]


# ----------------------------------------------------------------------------------------- classification
def _cifar(root: Path, name: str, n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    labels = rng.integers(0, n_classes, n)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    if name == "cifar10":
        d = root / "cifar10" / "cifar-10-batches-py"
        d.mkdir(parents=True)
        for b, part in enumerate(np.array_split(np.arange(n), 5), start=1):
            batch = {
                "batch_label": f"training batch {b} of 5",
                "labels": labels[part].tolist(),
                "data": pixels[part],
                "filenames": [f"img_{i}.png" for i in part],
            }
            (d / f"data_batch_{b}").write_bytes(pickle.dumps(batch, protocol=2))
        (d / "test_batch").write_bytes(
            pickle.dumps({"labels": [0], "data": pixels[:1]}, protocol=2)
        )
        (d / "batches.meta").write_bytes(
            pickle.dumps(
                {"label_names": CIFAR10_NAMES, "num_cases_per_batch": n // 5, "num_vis": 3072},
                protocol=2,
            )
        )
        noisy = labels.copy()
        flip = np.arange(n) % 5 < 2  # 40% worse labels
        noisy[flip] = (labels[flip] + 3) % n_classes
        torch.save(
            {
                "clean_label": labels,
                "worse_label": noisy,
                "aggre_label": labels,
                "random_label1": labels,
                "random_label2": labels,
                "random_label3": labels,
            },
            root / "cifar10" / "CIFAR-10_human.pt",
        )
    else:
        d = root / "cifar100" / "cifar-100-python"
        d.mkdir(parents=True)
        coarse = labels // 5
        (d / "train").write_bytes(
            pickle.dumps(
                {
                    "filenames": [f"img_{i}.png" for i in range(n)],
                    "batch_label": "training batch 1 of 1",
                    "fine_labels": labels.tolist(),
                    "coarse_labels": coarse.tolist(),
                    "data": pixels,
                },
                protocol=2,
            )
        )
        (d / "test").write_bytes(pickle.dumps({"fine_labels": [0], "data": pixels[:1]}, protocol=2))
        (d / "meta").write_bytes(
            pickle.dumps(
                {
                    "fine_label_names": [f"thing_{c}" for c in range(n_classes)],
                    "coarse_label_names": [f"group_{c}" for c in range(20)],
                },
                protocol=2,
            )
        )
        noisy = labels.copy()
        flip = np.arange(n) % 5 == 0  # 20% noisy labels
        noisy[flip] = (labels[flip] + 7) % n_classes
        (root / "cifar-n").mkdir()  # the shared CIFAR-N folder layout
        torch.save(
            {
                "clean_label": labels,
                "noisy_label": noisy,
                "clean_coarse_label": coarse.tolist(),
                "noisy_coarse_label": (noisy // 5).tolist(),
            },
            root / "cifar-n" / "CIFAR-100_human.pt",
        )
    return noisy


def fake_cifar10(root: Path) -> Fake:
    noisy = _cifar(root, "cifar10", 100, 10, np.random.default_rng(10))
    return Fake(
        {"train": 80, "val": 10, "test": 10},
        seeded=True,
        unique_texts=False,
        extra={"real_observed": noisy},
    )


def fake_cifar100(root: Path) -> Fake:
    noisy = _cifar(root, "cifar100", 200, 100, np.random.default_rng(100))
    return Fake(
        {"train": 160, "val": 20, "test": 20},
        seeded=True,
        unique_texts=False,
        extra={"real_observed": noisy},
    )


def _red(root: Path, name: str, annotations: str, n_classes: int) -> Fake:
    """Controlled Noisy Web Labels annotation JSON + images/<image/id>.jpg (4 never downloaded)."""
    rng = np.random.default_rng(len(name))
    d = root / name
    entries = []
    for i in range(44):
        image_id = f"{rng.integers(0, 2**63):016x}"
        entries.append(
            [
                {
                    "image/id": image_id,
                    "image/uri": f"https://example.com/{image_id}.jpg",
                    "image/class/label": int(rng.integers(0, n_classes)),
                    "image/class/label/is_clean": int(i % 2 == 0),
                }
            ]
        )
        if i < 40:  # the last 4 URLs were dead: never downloaded
            write_image(d / "images" / f"{i % 3:02d}" / f"{image_id}.jpg", rng)
    (d / annotations).write_text(json.dumps({"data": entries}))
    return Fake(
        {"train": 20, "val": 10, "test": 10},
        seeded=True,
        intrinsic_mislabels=20,
        unique_texts=False,
    )


def fake_mini_imagenet(root: Path) -> Fake:
    return _red(root, "mini_imagenet", "mini-imagenet-annotations.json", 100)


def fake_stanford_cars(root: Path) -> Fake:
    return _red(root, "stanford_cars", "stanford-cars-annotations.json", 196)


# ----------------------------------------------------------------------------------------- captioning
KARPATHY_COUNTS = {"train": 6, "restval": 2, "val": 2, "test": 2}


def _karpathy_images(counts: dict[str, int], rng: np.random.Generator, coco: bool) -> list[dict]:
    images, sentid = [], 0
    for split, count in counts.items():
        for _ in range(count):
            i = len(images)
            n_sent = 5 + (i % 3 == 0)
            sentences = [
                {
                    "tokens": caption(i, rng).lower().strip(".").split(),
                    "raw": f"{caption(i, rng)} v{j}",
                    "imgid": i,
                    "sentid": sentid + j,
                }
                for j in range(n_sent)
            ]
            record = {
                "sentids": [s["sentid"] for s in sentences],
                "imgid": i,
                "sentences": sentences,
                "split": split,
            }
            sentid += n_sent
            if coco:
                folder = "val2014" if split in ("val", "test") or i % 4 == 0 else "train2014"
                record.update(
                    filepath=folder, cocoid=1000 + i, filename=f"COCO_{folder}_{1000 + i:012d}.jpg"
                )
            else:
                record["filename"] = f"{100000 + i}.jpg"
            images.append(record)
    return images


def fake_mscoco(
    root: Path, counts: dict[str, int] | None = None, corrupt: int = 0, truncated: int = 0
) -> Fake:
    """Karpathy dataset_coco.json + train2014/val2014 JPEGs + instances_{train,val}2014.json.

    The first ``corrupt`` images are not images at all (the loader drops them); the next ``truncated`` are
    JPEGs cut in half, whose header passes the loader's check and whose decode fails only when embedding
    (their ids are in ``extra['truncated']``). Both come from the train split when counts are the default.
    """
    counts = counts or KARPATHY_COUNTS
    rng = np.random.default_rng(2014)
    d = root / "mscoco"
    images = _karpathy_images(counts, rng, coco=True)
    for k, img in enumerate(images):
        write_image(
            d / img["filepath"] / img["filename"],
            rng,
            corrupt=k < corrupt,
            truncated=corrupt <= k < corrupt + truncated,
        )
    (d / "train2014").mkdir(parents=True, exist_ok=True)
    (d / "val2014").mkdir(parents=True, exist_ok=True)
    (d / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    categories = [
        {"supercategory": "x", "id": cid, "name": name}
        for cid, name in ((1, "person"), (3, "car"), (18, "dog"), (62, "chair"))
    ]
    for folder in ("train2014", "val2014"):
        mine = [img for img in images if img["filepath"] == folder]
        annotations = []
        for img in mine[1:] if folder == "train2014" else mine:  # one train image has no objects
            for cid in (1, (3, 18, 62)[img["cocoid"] % 3], 1):  # duplicates: two persons
                annotations.append(
                    {
                        "segmentation": [[0.0, 0.0, 1.0, 1.0]],
                        "area": 1.0,
                        "iscrowd": 0,
                        "image_id": img["cocoid"],
                        "bbox": [0, 0, 1, 1],
                        "category_id": cid,
                        "id": len(annotations) + 1,
                    }
                )
        (d / "annotations").mkdir(exist_ok=True)
        (d / "annotations" / f"instances_{folder}.json").write_text(
            json.dumps(
                {
                    "info": {},
                    "licenses": [],
                    "images": [{"id": i["cocoid"], "file_name": i["filename"]} for i in mine],
                    "annotations": annotations,
                    "categories": categories,
                }
            )
        )
    sizes = {
        "train": counts["train"] + counts.get("restval", 0),
        "val": counts["val"],
        "test": counts["test"],
    }
    if corrupt:
        sizes["train"] -= corrupt  # the first images are train images
    cut = [
        f"mscoco/{img['filepath']}/{img['filename']}"
        for img in images[corrupt : corrupt + truncated]
    ]
    return Fake(sizes, seeded=False, skipped=corrupt, extra={"truncated": cut})


def fake_flickr30k(root: Path) -> Fake:
    rng = np.random.default_rng(30)
    d = root / "flickr30k"
    images = _karpathy_images({"train": 8, "val": 2, "test": 2}, rng, coco=False)
    for img in images:
        write_image(d / "flickr30k_images" / img["filename"], rng)
    (d / "dataset_flickr30k.json").write_text(
        json.dumps({"images": images, "dataset": "flickr30k"})
    )
    return Fake({"train": 8, "val": 2, "test": 2}, seeded=False)


def fake_mmimdb(root: Path) -> Fake:
    """split.json + dataset/<id>.json + dataset/<id>.jpeg; one movie has no plot outline (dropped)."""
    rng = np.random.default_rng(7)
    d = root / "mmimdb" / "dataset"
    d.mkdir(parents=True)
    genres = ("Drama", "Comedy", "Action", "Horror")
    split = {"train": [], "dev": [], "test": []}
    for i in range(13):
        movie_id = f"{i * 7919 + 100:07d}"
        split["train" if i < 8 else "dev" if i < 10 else "test"].append(movie_id)
        record = {
            "title": f"Movie {i}",
            "genres": ["Drama", genres[1 + i % 3]],
            "year": 2000 + i,
            "plot": [f"Long plot {i}.", "More."],
            "cover url": "x",
        }
        if i != 3:
            record["plot outline"] = caption(i, rng)
        (d / f"{movie_id}.json").write_text(json.dumps(record))
        write_image(d / f"{movie_id}.jpeg", rng)
    (root / "mmimdb" / "split.json").write_text(json.dumps(split))
    return Fake(
        {"train": 7, "val": 2, "test": 3}, seeded=False, extra={"dropped_empty_text": {"train": 1}}
    )


REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old with cough.

 COMPARISON:  None.

 FINDINGS:

 {findings}

 IMPRESSION:

 {impression}
"""
CHEXPERT = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)


def fake_mimiccxr_caption(root: Path) -> Fake:
    """MIMIC-CXR-JPG split/chexpert/metadata CSVs (gzipped) + JPEGs + MIMIC-CXR report texts."""
    rng = np.random.default_rng(11)
    d = root / "mimiccxr_caption"
    split_rows, label_rows, meta_rows = [], [], []
    plan = ["train"] * 7 + ["validate"] * 2 + ["test"] * 2
    for k, split in enumerate(plan):
        subject, study = 10000032 + k * 1111, 50414267 + k * 37
        folder = f"p{str(subject)[:2]}/p{subject}/s{study}"
        report = REPORT.format(
            findings=f"The {NOUNS[k % 6]} sign number {k} is seen.",
            impression=f"No acute process {k}.",
        )
        if k == 4:  # no FINDINGS / IMPRESSION sections and one paragraph: no text, dropped
            report = "   FINAL REPORT\n Wet read only.\n"
        (d / "reports" / "files" / f"p{str(subject)[:2]}/p{subject}").mkdir(
            parents=True, exist_ok=True
        )
        (d / "reports" / "files" / f"{folder}.txt").write_text(report)
        for view in range(1 + (k % 3 == 0)):  # some studies have two images (same report)
            dicom = f"{k:02d}{view}a2b3c4-d5e6f7a8-b9c0d1e2-f3a4b5c6-d7e8f9a0"
            split_rows.append(
                {"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": split}
            )
            meta_rows.append(
                {
                    "dicom_id": dicom,
                    "subject_id": subject,
                    "study_id": study,
                    "ViewPosition": "PA" if view == 0 else "LATERAL",
                }
            )
            write_image(d / "files" / folder / f"{dicom}.jpg", rng)
        values = {c: [np.nan, 1.0, 0.0, -1.0][(k + j) % 4] for j, c in enumerate(CHEXPERT)}
        values["Edema"] = 1.0  # every study shares positive:Edema
        label_rows.append({"subject_id": subject, "study_id": study, **values})
    for stem, rows in (("split", split_rows), ("chexpert", label_rows), ("metadata", meta_rows)):
        with gzip.open(d / f"mimic-cxr-2.0.0-{stem}.csv.gz", "wt") as f:
            pd.DataFrame(rows).to_csv(f, index=False)
    # train studies 0..6 with 2 images for k in (0, 3, 6) -> 10 images, minus study 4 (dropped) -> 9
    return Fake(
        {"train": 9, "val": 2, "test": 3},
        seeded=False,
        unique_texts=False,
        extra={"dropped_empty_text": {"train": 1}},
    )


def fake_cc3m(root: Path) -> Fake:
    """Two webdataset shards (train + validation) of <key>.jpg/.txt/.json; one train jpg is corrupt."""
    import webdataset as wds

    rng = np.random.default_rng(3)
    d = root / "cc3m"
    d.mkdir(parents=True)
    for shard, n in (("cc3m-train-0000.tar", 16), ("cc3m-validation-0000.tar", 8)):
        with wds.TarWriter(str(d / shard)) as sink:
            for i in range(n):
                key = f"{shard[5:9]}{i:05d}"
                image = (
                    b"not a jpeg at all"
                    if (shard.startswith("cc3m-train") and i == 5)
                    else jpeg_bytes(rng)
                )
                sink.write(
                    {
                        "__key__": key,
                        "jpg": image,
                        "txt": caption(i + 100 * len(shard), rng),
                        "json": {"key": key, "status": "success"},
                    }
                )
    return Fake({"train": 15, "val": 4, "test": 4}, seeded=True, has_ground_truth=False, skipped=1)


# ----------------------------------------------------------------------------------------- bring your own
def fake_csv(root: Path) -> Fake:
    """A captioning CSV (relative image paths) with a clean column: 3 rows carry a wrong caption."""
    rng = np.random.default_rng(5)
    d = root / "byo_csv"
    rows = []
    for i in range(30):
        write_image(d / "imgs" / f"{i:03d}.jpg", rng)
        clean = caption(i, rng)
        rows.append(
            {
                "image": f"imgs/{i:03d}.jpg",
                "caption": f"Wrong text {i}." if i % 10 == 1 else clean,
                "clean_caption": clean,
            }
        )
    pd.DataFrame(rows).to_csv(d / "pairs.csv", index=False)
    return Fake(
        {"train": 24, "val": 3, "test": 3},
        seeded=True,
        intrinsic_mislabels=3,
        options={"data_path": str(d / "pairs.csv"), "clean_column": "clean_caption"},
    )


def fake_parquet(root: Path) -> Fake:
    """A classification parquet table with HF-style image structs ({'bytes', 'path'}) and a split column."""
    rng = np.random.default_rng(6)
    d = root / "byo_parquet"
    d.mkdir(parents=True)
    splits = ["train", "train", "train", "train", "validation", "test"]
    rows = [
        {
            "image": {"bytes": jpeg_bytes(rng), "path": f"{i}.jpg"},
            "label": ["cat", "dog", "bird"][i % 3],
            "split": splits[i % 6],
        }
        for i in range(24)
    ]
    pd.DataFrame(rows).to_parquet(d / "pairs.parquet")
    return Fake(
        {"train": 16, "val": 4, "test": 4},
        seeded=False,
        has_ground_truth=False,
        unique_texts=False,
        options={"data_path": str(d / "pairs.parquet")},
    )


def fake_folder(root: Path) -> Fake:
    """An ImageFolder tree <root>/<class>/<image> (3 classes x 10 images)."""
    rng = np.random.default_rng(8)
    d = root / "byo_folder"
    for c in ("apple", "banana", "cherry"):
        for i in range(10):
            write_image(d / c / f"{c}_{i}.jpg", rng)
    return Fake(
        {"train": 24, "val": 3, "test": 3},
        seeded=True,
        has_ground_truth=False,
        unique_texts=False,
        options={"data_path": str(d)},
    )


FAKES: dict[str, Callable[[Path], Fake]] = {
    "cifar10": fake_cifar10,
    "cifar100": fake_cifar100,
    "mini_imagenet": fake_mini_imagenet,
    "stanford_cars": fake_stanford_cars,
    "mscoco": fake_mscoco,
    "flickr30k": fake_flickr30k,
    "mmimdb": fake_mmimdb,
    "mimiccxr_caption": fake_mimiccxr_caption,
    "cc3m": fake_cc3m,
    "csv": fake_csv,
    "parquet": fake_parquet,
    "folder": fake_folder,
}


def write_fake(name: str, root: Path) -> Fake:
    """Write dataset ``name`` under ``root``; a dataset without a writer is a test failure by design."""
    if name not in FAKES:
        raise AssertionError(
            f"no fake writer for dataset '{name}': add one to tests/fake_data.py FAKES"
        )
    return FAKES[name](Path(root))
