"""Every registered dataset, loaded from a tiny fake copy in its REAL on-disk format (tests/fake_data.py).

The generic tests are parametrised over DATASETS.names(), so a newly registered dataset is tested
automatically (and fails until tests/fake_data.py can write a fake of it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fake_data import (
    KARPATHY_COUNTS,
    REPORT,
    fake_mscoco,
    jpeg_bytes,
    noun_tagger,
    write_fake,
    write_image,
)

from lemon.core.errors import DatasetNotFoundError, LemonError
from lemon.data import DATASETS
from lemon.data.__main__ import main as data_cli
from lemon.data.base import DataOptions
from lemon.data.captioning_medical import chexpert_categories, report_text
from lemon.data.classification import read_cifar_n
from lemon.data.loading import load_splits
from lemon.noise import NOISES, apply_noise

SKIP = {"embeddings", "synthetic", "demo"}  # tested elsewhere (no files of their own)
NAMES = [n for n in DATASETS.names() if n not in SKIP]
# the real CIFAR-N label files, vendored (CC BY-NC 4.0, see their LICENSE.md)
SHARED_CIFAR_N = Path(__file__).resolve().parents[1] / "fixtures" / "cifar-n"
_FAKES: dict = {}


@pytest.fixture(scope="session")
def fake(tmp_path_factory):
    """fake(name) -> (data root, Fake): each dataset is written once per session."""

    def get(name: str):
        if name not in _FAKES:
            root = tmp_path_factory.mktemp(name)
            _FAKES[name] = (root, write_fake(name, root))
        return _FAKES[name]

    return get


def load(name: str, root: Path, options: dict | None = None, seed: int = 0):
    flags = {"data_dir": str(root), "data_seed": seed, **(options or {})}
    return load_splits(DATASETS.get(name)(DataOptions.from_flags(flags)))


# ----------------------------------------------------------------------------- generic, per registry entry
@pytest.mark.parametrize("name", NAMES)
def test_loads_the_real_format(name, fake):
    root, spec = fake(name)
    splits = load(name, root, spec.options)
    dataset = DATASETS.get(name)()
    assert splits.name == name and dataset.task in (splits.task, "any")
    assert {s: len(p) for s, p in splits.splits.items()} == spec.sizes
    assert splits.has_ground_truth == spec.has_ground_truth
    all_ids = []
    for s, part in splits.splits.items():
        assert part.split == s and part.task == splits.task
        assert len(part.images) == len(part.clean) == len(part.observed) == len(part)
        ids = list(part.images.ids)
        assert all(isinstance(i, str) and i for i in ids)
        all_ids += ids
        image = part.images[len(part) - 1]
        assert image.mode == "RGB" and min(image.size) > 0
        texts = part.prompts()
        assert len(texts) == len(part) and all(isinstance(t, str) and t for t in texts)
        if splits.task == "classification":
            assert part.class_names is not None and part.observed.dtype.kind == "i"
            assert part.observed.min() >= 0 and part.observed.max() < len(part.class_names)
        else:
            assert part.class_names is None
    assert len(set(all_ids)) == len(all_ids)  # an image belongs to one split only
    assert sum(int(p.is_mislabel.sum()) for p in splits.splits.values()) == spec.intrinsic_mislabels
    assert sum(p.dropped.count("unreadable image") for p in splits.splits.values()) == spec.skipped


@pytest.mark.parametrize("name", NAMES)
def test_check_cli_accepts_the_fake_copy(name, fake, capsys):
    root, spec = fake(name)
    from lemon.data.base import SOURCE_FLAGS as BYO_FLAGS

    assert set(spec.options) <= set(BYO_FLAGS), f"options the check CLI cannot take: {spec.options}"
    flags = [x for k, v in spec.options.items() for x in (f"--{k}", str(v))]
    assert data_cli(["check", name, "--data_dir", str(root), *flags]) == 0
    out = capsys.readouterr().out.strip()
    sizes = " ".join(f"{s}={n}" for s, n in spec.sizes.items())
    assert re.fullmatch(
        rf"OK {name} \((classification|captioning)(, no ground truth)?\): {sizes}"
        rf"( \(not scored: \d+ pairs: .*\))?",
        out,
    ), out
    assert ("no ground truth" in out) == (not spec.has_ground_truth)
    if spec.skipped:
        assert f"'unreadable image': {spec.skipped}" in out


@pytest.mark.parametrize("name", NAMES)
def test_splits_are_deterministic_per_seed(name, fake):
    root, spec = fake(name)
    a, b, *others = (load(name, root, spec.options, seed) for seed in (0, 0, 1, 2))
    for s in ("train", "val", "test"):
        assert list(a[s].images.ids) == list(b[s].images.ids)
        assert np.array_equal(a[s].observed, b[s].observed)
    moved = any(
        list(a[s].images.ids) != list(c[s].images.ids)
        for c in others
        for s in ("train", "val", "test")
    )
    assert moved == spec.seeded  # random splits move with data_seed; official ones never do


@pytest.mark.parametrize("name", NAMES)
def test_missing_data_names_the_path_and_section(name, tmp_path):
    options = {"data_path": str(tmp_path / "absent")} if "data_path" in _byo_options(name) else {}
    with pytest.raises(
        DatasetNotFoundError,
        match=rf"^Dataset '{name}' not found: .*{re.escape(str(tmp_path))}"
        rf".* See DataSources\.md#{name}\.$",
    ):
        load(name, tmp_path, options)


@pytest.mark.parametrize("name", NAMES)
def test_every_supported_noise_applies_with_exact_counts(name, fake):
    root, spec = fake(name)
    splits = load(name, root, spec.options)
    for noise in DATASETS.get(name).noise_types:
        if not NOISES.get(noise).compatible(splits.task):
            continue
        if noise == "real" and not spec.has_ground_truth:
            with pytest.raises(
                LemonError, match=rf"Dataset '{name}' has no ground-truth labels.*--real_dataset"
            ):
                apply_noise(splits, noise, 0.0, data_seed=0)
            continue
        options = {"tagger": noun_tagger} if noise == "noun" else {}
        noisy = apply_noise(splits, noise, 0.5, data_seed=0, **options)
        for s, part in noisy.splits.items():
            clean = splits[s]
            assert np.array_equal(part.clean, clean.clean) and list(part.images.ids) == list(
                clean.images.ids
            )
            if noise in ("random", "noun", "cat"):
                k = len(part) // 2
                assert part.n_swapped == k
                changed = int((part.observed != clean.observed).sum())
                assert changed == k if spec.unique_texts else changed <= k
                assert set(part.observed) <= set(clean.observed)  # swapped within the split
            elif noise == "asymmetric":
                moved = part.observed != clean.observed
                assert (
                    part.observed[moved] == (clean.observed[moved] + 1) % len(part.class_names)
                ).all()
            elif noise == "symmetric":
                assert not (part.observed[part.is_mislabel] == part.clean[part.is_mislabel]).any()
            elif noise == "real" and "real_observed" in spec.extra:
                rows = [int(i.rsplit("/", 1)[1]) for i in part.images.ids]
                assert np.array_equal(part.observed, spec.extra["real_observed"][rows])


@pytest.mark.parametrize("name", NAMES)
def test_unsupported_noise_lists_the_supported_ones(name, fake):
    root, spec = fake(name)
    splits = load(name, root, spec.options)
    declared = DATASETS.get(name).noise_types
    other = next(
        n for n in NOISES.names() if n not in declared or not NOISES.get(n).compatible(splits.task)
    )
    supported = [n for n in declared if NOISES.get(n).compatible(splits.task)]
    with pytest.raises(
        LemonError,
        match=rf"^Noise type '{other}' is not supported for dataset '{name}'; "
        rf"supported: {', '.join(supported)}\.$",
    ):
        apply_noise(splits, other, 0.4, data_seed=0)


def _byo_options(name: str) -> set:
    from lemon.data.custom import ConfigurableDataset

    return {"data_path"} if issubclass(DATASETS.get(name), ConfigurableDataset) else set()


GARBAGE = b"\x00\xffnot a dataset file\x80\x81" * 8


@pytest.mark.parametrize(
    "name, relpath, content",
    [
        ("cifar10", "cifar10/cifar-10-batches-py/data_batch_2", GARBAGE),
        ("cifar10", "cifar10/cifar-10-batches-py/batches.meta", GARBAGE),
        ("cifar10", "cifar10/CIFAR-10_human.pt", GARBAGE),
        ("cifar100", "cifar-n/CIFAR-100_human.pt", GARBAGE),
        (
            "cifar100",
            "cifar100/cifar-100-python/train",
            b"\x80\x02]q\x00(K\x01K\x02e.",
        ),  # a pickled list
        ("mscoco", "mscoco/dataset_coco.json", GARBAGE),
        ("mscoco", "mscoco/annotations/instances_val2014.json", GARBAGE),
        (
            "flickr30k",
            "flickr30k/dataset_flickr30k.json",
            b'{"images": 3}',
        ),  # valid JSON, wrong structure
        ("mmimdb", "mmimdb/split.json", GARBAGE),
        ("mmimdb", "mmimdb/split.json", b"[1, 2]"),
        ("mimiccxr_caption", "mimiccxr_caption/mimic-cxr-2.0.0-split.csv.gz", GARBAGE),
        ("mimiccxr_caption", "mimiccxr_caption/mimic-cxr-2.0.0-chexpert.csv.gz", GARBAGE),
        ("mini_imagenet", "mini_imagenet/mini-imagenet-annotations.json", GARBAGE),
    ],
    ids=lambda v: "garbage" if v is GARBAGE else None,
)
def test_unreadable_metadata_is_a_one_line_error_naming_the_file(
    name, relpath, content, tmp_path, capsys
):
    write_fake(name, tmp_path)
    path = tmp_path / relpath
    assert path.is_file(), f"the fake copy of {name} has no {relpath}"
    path.write_bytes(content)
    pattern = rf"^Dataset '{name}': cannot read .*{re.escape(str(path))} \(.+\)\..* See DataSources\.md#{name}\.$"
    with pytest.raises(LemonError, match=pattern) as info:
        load(name, tmp_path)
    assert "\n" not in str(info.value) and not isinstance(info.value, DatasetNotFoundError)
    assert data_cli(["check", name, "--data_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err  # one line on stderr, no traceback


# ----------------------------------------------------------------------------- CIFAR and CIFAR-N
def test_cifar_split_is_80_10_10_of_the_official_train_set(fake):
    root, _ = fake("cifar10")
    rows = {
        s: sorted(int(i.rsplit("/", 1)[1]) for i in p.images.ids)
        for s, p in load("cifar10", root).splits.items()
    }
    assert sorted(rows["train"] + rows["val"] + rows["test"]) == list(range(100))


def test_cifar_pixels_and_labels_follow_the_pickles(fake):
    import pickle

    root, _ = fake("cifar10")
    batch = pickle.loads((root / "cifar10" / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    splits = load("cifar10", root)
    found = [
        (part, k)
        for part in splits.splits.values()
        for k, i in enumerate(part.images.ids)
        if i == "cifar10/train/00003"
    ]
    assert len(found) == 1, (
        f"image 3 of the train pickles must be in exactly one split, found {len(found)}"
    )
    part, k = found[0]
    expected = batch["data"][3].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(part.images[k]), expected)
    assert part.clean[k] == batch["labels"][3]


def test_cifar_n_with_other_clean_labels_is_refused(tmp_path):
    write_fake("cifar10", tmp_path)
    path = tmp_path / "cifar10" / "CIFAR-10_human.pt"
    labels = torch.load(path, weights_only=False)
    labels["clean_label"] = (labels["clean_label"] + 1) % 10
    torch.save(labels, path)
    with pytest.raises(
        LemonError, match="clean_label disagrees with the CIFAR train labels in 100 places"
    ):
        load("cifar10", tmp_path)


def test_cifar_without_cifar_n_loads_but_real_noise_names_the_file(tmp_path):
    write_fake("cifar10", tmp_path)
    (tmp_path / "cifar10" / "CIFAR-10_human.pt").unlink()
    splits = load("cifar10", tmp_path)
    apply_noise(splits, "symmetric", 0.2, data_seed=0)
    with pytest.raises(
        DatasetNotFoundError,
        match=r"CIFAR-N labels for 'cifar10' not found: expected .*"
        r"CIFAR-10_human.pt .*DataSources.md#cifar10",
    ):
        apply_noise(splits, "real", 0.0, data_seed=0)


@pytest.mark.skipif(
    not SHARED_CIFAR_N.is_dir(), reason=f"real CIFAR-N files not present in {SHARED_CIFAR_N}"
)
@pytest.mark.parametrize(
    "file, key, rate",
    [("CIFAR-10_human.pt", "worse_label", 0.4021), ("CIFAR-100_human.pt", "noisy_label", 0.4020)],
)
def test_real_cifar_n_files_have_the_published_noise_rates(file, key, rate):
    clean, noisy = read_cifar_n(SHARED_CIFAR_N / file, key)
    assert clean.shape == noisy.shape == (50000,)
    assert round(float((clean != noisy).mean()), 4) == rate


def _cifar_pickles_with_labels(root: Path, name: str, labels: np.ndarray) -> None:
    """Official-format CIFAR pickles (blank pixels) whose train labels are ``labels``."""
    import pickle

    n_classes = int(labels.max()) + 1
    pixels = np.zeros((len(labels), 3072), dtype=np.uint8)
    if name == "cifar10":
        d = root / "cifar10" / "cifar-10-batches-py"
        d.mkdir(parents=True)
        for b, part in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
            (d / f"data_batch_{b}").write_bytes(
                pickle.dumps({"labels": labels[part].tolist(), "data": pixels[part]}, protocol=2)
            )
        (d / "batches.meta").write_bytes(
            pickle.dumps({"label_names": [f"c{c}" for c in range(n_classes)]})
        )
    else:
        d = root / "cifar100" / "cifar-100-python"
        d.mkdir(parents=True)
        (d / "train").write_bytes(
            pickle.dumps({"fine_labels": labels.tolist(), "data": pixels}, protocol=2)
        )
        (d / "meta").write_bytes(
            pickle.dumps({"fine_label_names": [f"c{c}" for c in range(n_classes)]})
        )


@pytest.mark.skipif(
    not SHARED_CIFAR_N.is_dir(), reason=f"real CIFAR-N files not present in {SHARED_CIFAR_N}"
)
@pytest.mark.parametrize(
    "name, file, key, published",
    [
        ("cifar10", "CIFAR-10_human.pt", "worse_label", 0.4021),
        ("cifar100", "CIFAR-100_human.pt", "noisy_label", 0.4020),
    ],
)
def test_real_noise_from_the_real_cifar_n_files_flows_through_the_loader(
    name, file, key, published, tmp_path
):
    raw = torch.load(
        SHARED_CIFAR_N / file, weights_only=False
    )  # read here, independently of the loader
    clean, human = (
        np.asarray(raw["clean_label"], dtype=np.int64),
        np.asarray(raw[key], dtype=np.int64),
    )
    expected_rate = float((clean != human).mean())
    assert round(expected_rate, 4) == published  # the file is the published one
    _cifar_pickles_with_labels(tmp_path, name, clean)
    (tmp_path / "cifar-n").symlink_to(
        SHARED_CIFAR_N, target_is_directory=True
    )  # the shared-folder lookup
    splits = load(name, tmp_path, seed=1)
    noisy = apply_noise(splits, "real", 0.0, data_seed=1)
    seen = 0
    for part in noisy.splits.values():
        assert part.real_source == str(tmp_path / "cifar-n" / file) and part.noise == "real"
        rows = np.asarray([int(i.rsplit("/", 1)[1]) for i in part.images.ids])
        assert np.array_equal(part.clean, clean[rows]) and np.array_equal(
            part.observed, human[rows]
        )
        seen += len(rows)
    assert seen == len(clean) == 50000
    mislabelled = sum(int(p.is_mislabel.sum()) for p in noisy.splits.values())
    assert mislabelled == int((clean != human).sum())
    assert mislabelled / seen == pytest.approx(expected_rate, abs=0)


def test_cifar_download_places_files_where_the_loader_looks(tmp_path, monkeypatch):
    import sys
    import types
    import urllib.request

    def fake_cifar(root, train, download):
        assert train and download
        write_fake("cifar10", tmp_path / "staging")
        Path(root).mkdir(parents=True, exist_ok=True)
        (tmp_path / "staging" / "cifar10" / "cifar-10-batches-py").rename(
            Path(root) / "cifar-10-batches-py"
        )

    monkeypatch.setitem(
        sys.modules,
        "torchvision",
        types.SimpleNamespace(datasets=types.SimpleNamespace(CIFAR10=fake_cifar)),
    )
    monkeypatch.setattr(
        urllib.request,
        "urlretrieve",
        lambda url, dest: Path(dest).write_bytes(
            (tmp_path / "staging" / "cifar10" / "CIFAR-10_human.pt").read_bytes()
        ),
    )
    assert data_cli(["download", "cifar10", "--data_dir", str(tmp_path / "data")]) == 0
    assert load("cifar10", tmp_path / "data")["train"].real_source.endswith("CIFAR-10_human.pt")


# ----------------------------------------------------------------------------- Karpathy sets, COCO
def test_karpathy_caption_is_the_originals_fixed_seed_draw_and_restval_joins_train(fake):
    root, _ = fake("mscoco")
    images = json.loads((root / "mscoco" / "dataset_coco.json").read_text())["images"]
    np.random.seed(42)  # the original preprocessing, verbatim in spirit: one legacy draw per image
    expected = {img["filename"]: np.random.choice(img["sentences"])["raw"] for img in images}
    splits = load("mscoco", root)
    for part in splits.splits.values():
        for ref, text in zip(part.images.ids, part.clean):
            assert text == expected[ref.rsplit("/", 1)[1]]
    restval = {img["filename"] for img in images if img["split"] == "restval"}
    assert restval <= {i.rsplit("/", 1)[1] for i in splits["train"].images.ids}
    assert len(splits["train"]) == KARPATHY_COUNTS["train"] + KARPATHY_COUNTS["restval"]


def test_coco_categories_come_from_instances_annotations(fake):
    root, _ = fake("mscoco")
    splits = load("mscoco", root)
    cats = [c for p in splits.splits.values() for c in p.categories]
    assert () in cats  # the image without objects
    assert all(c == tuple(sorted(set(c))) for c in cats)  # duplicates (two persons) collapse
    assert {x for c in cats for x in c} <= {"person", "car", "dog", "chair"}


def test_coco_without_instances_loads_and_cat_noise_names_the_file(tmp_path):
    fake_mscoco(tmp_path)
    (tmp_path / "mscoco" / "annotations" / "instances_val2014.json").unlink()
    splits = load("mscoco", tmp_path)
    apply_noise(splits, "random", 0.5, data_seed=0)
    with pytest.raises(
        LemonError,
        match=r"'cat' noise needs the COCO instances annotations: expected "
        r".*instances_val2014.json",
    ):
        apply_noise(splits, "cat", 0.5, data_seed=0)


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    spec = fake_mscoco(tmp_path, corrupt=2)
    splits = load("mscoco", tmp_path)
    assert len(splits["train"]) == spec.sizes["train"] == 6
    assert splits["train"].dropped.count("unreadable image") == 2 and not len(splits["val"].dropped)
    assert data_cli(["check", "mscoco", "--data_dir", str(tmp_path)]) == 0


def test_truncated_jpeg_passes_the_header_check_and_fails_only_on_decode(tmp_path):
    spec = fake_mscoco(tmp_path, truncated=2)
    splits = load("mscoco", tmp_path)
    assert len(splits["train"]) == spec.sizes["train"] == 8 and not len(splits["train"].dropped)
    part = splits["train"]
    bad = [list(part.images.ids).index(ref) for ref in spec.extra["truncated"]]
    with pytest.raises(OSError, match="truncated"):
        part.images[bad[0]]  # what used to crash the embedding stage's DataLoader workers


# ----------------------------------------------------------------------------- MIMIC, MM-IMDb, Red, CC3M
def test_report_text_keeps_findings_and_impression():
    text = report_text(REPORT.format(findings="Lungs are\n clear.", impression="No acute process."))
    assert text == "FINDINGS: Lungs are clear. IMPRESSION: No acute process."
    assert (
        report_text(" FINDINGS: a.\n\n IMPRESSION: b.\n\n IMPRESSION: c.")
        == "FINDINGS: a. IMPRESSION: c."
    )
    assert report_text(" INDICATION: x.\n\n Small effusion.\n") == "IMPRESSION: Small effusion."
    assert report_text("  FINAL REPORT\n Wet read only.\n") == ""


def test_chexpert_values_become_findings_with_their_value():
    values = np.full((2, 13), np.nan)
    values[0, 3], values[0, 8], values[1, 0] = 1.0, 0.0, -1.0
    assert chexpert_categories(values) == [
        ("positive:Edema", "negative:No Finding"),
        ("uncertain:Atelectasis",),
    ]


def test_mimic_and_mmimdb_drop_samples_without_text(fake):
    for name in ("mimiccxr_caption", "mmimdb"):
        root, spec = fake(name)
        splits = load(name, root)
        expected = {"train": 0, "val": 0, "test": 0, **spec.extra["dropped_empty_text"]}
        assert {s: p.dropped.count("empty text") for s, p in splits.splits.items()} == expected
        assert all(t for p in splits.splits.values() for t in p.clean)


def test_mmimdb_genres_are_categories(fake):
    root, _ = fake("mmimdb")
    splits = load("mmimdb", root)
    assert all("Drama" in c for p in splits.splits.values() for c in p.categories)


def test_red_sets_split_50_25_25_stratified_by_is_clean(fake):
    root, _ = fake("mini_imagenet")
    splits = load("mini_imagenet", root, seed=3)
    for part in splits.splits.values():
        assert part.is_mislabel.mean() == 0.5  # 20 clean / 20 noisy downloaded -> exact strata
        assert splits.dropped.count("not downloaded") == 4
        assert (part.clean_unknown == part.is_mislabel).all()


def test_cc3m_reads_images_from_shards_without_ground_truth(fake):
    root, _ = fake("cc3m")
    splits = load("cc3m", root)
    assert all(i.startswith("cc3m-train-0000.tar/") for i in splits["train"].images.ids)
    assert all("validation" in i for s in ("val", "test") for i in splits[s].images.ids)
    assert not splits.has_ground_truth


def test_cc3m_without_validation_shards_splits_train_80_10_10(tmp_path):
    import webdataset as wds

    rng = np.random.default_rng(0)
    (tmp_path / "cc3m" / "part").mkdir(parents=True)
    for shard in ("00000.tar", "00001.tar"):
        with wds.TarWriter(str(tmp_path / "cc3m" / "part" / shard)) as sink:
            for i in range(10):
                sink.write(
                    {
                        "__key__": f"{shard[:5]}{i:04d}",
                        "jpg": jpeg_bytes(rng),
                        "txt": f"text {shard} {i}",
                    }
                )
    splits = load("cc3m", tmp_path)
    assert {s: len(p) for s, p in splits.splits.items()} == {"train": 16, "val": 2, "test": 2}


# ----------------------------------------------------------------------------- bring your own
def _table(tmp_path: Path, rows: list[dict], n_images: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n_images):
        write_image(tmp_path / "img" / f"{i}.jpg", rng)
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    return tmp_path / "t.csv"


def test_csv_classification_with_integer_labels_and_absolute_paths(tmp_path):
    rows = [
        {
            "path": str(tmp_path / "img" / f"{i}.jpg"),
            "y": i % 3 * 10,
            "split": ["train", "val", "test"][i % 3],
        }
        for i in range(12)
    ]
    path = _table(tmp_path, rows, 12)
    splits = load(
        "csv", tmp_path, {"data_path": str(path), "image_column": "path", "label_column": "y"}
    )
    assert splits.task == "classification" and splits["train"].class_names == ["0", "10", "20"]
    assert {s: len(p) for s, p in splits.splits.items()} == {"train": 4, "val": 4, "test": 4}
    assert not splits.has_ground_truth
    noisy = apply_noise(splits, "symmetric", 0.5, data_seed=0)
    assert noisy.has_ground_truth


def test_csv_needs_exactly_one_of_caption_and_label(tmp_path):
    path = _table(
        tmp_path, [{"image": f"img/{i}.jpg", "caption": f"c{i}", "label": "a"} for i in range(3)], 3
    )
    with pytest.raises(
        LemonError,
        match=r"both a caption column 'caption' and a label column 'label'; pass "
        r"--text_column '' or --label_column ''",
    ):
        load("csv", tmp_path, {"data_path": str(path)})
    with pytest.raises(
        LemonError,
        match=r"needs an image column 'img'.*its columns are \['image', 'caption', "
        r"'label'\]",
    ):
        load("csv", tmp_path, {"data_path": str(path), "image_column": "img", "label_column": ""})
    with pytest.raises(LemonError, match=r"no clean column 'gold' \(--clean_column\)"):
        load("csv", tmp_path, {"data_path": str(path), "label_column": "", "clean_column": "gold"})


def test_folder_with_split_subfolders_uses_them(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("valid", 2), ("test", 3)):
        for c in ("a", "b"):
            for i in range(n):
                write_image(tmp_path / "tree" / split / c / f"{i}.png", rng)
    splits = load("folder", tmp_path, {"data_path": str(tmp_path / "tree")}, seed=5)
    assert {s: len(p) for s, p in splits.splits.items()} == {"train": 8, "val": 4, "test": 6}
    assert splits["train"].class_names == ["a", "b"]


def test_parquet_image_bytes_get_content_ids(fake):
    root, spec = fake("parquet")
    splits = load("parquet", root, spec.options)
    assert all(i.startswith("sha1:") for i in splits["train"].images.ids)
    assert splits["val"].class_names == ["bird", "cat", "dog"]


# ----------------------------------------------------------------------------- command line
def test_check_cli_prints_sizes_or_the_missing_path(fake, tmp_path, capsys):
    root, _ = fake("mscoco")
    assert data_cli(["check", "mscoco", "--data_dir", str(root)]) == 0
    assert capsys.readouterr().out.strip() == "OK mscoco (captioning): train=8 val=2 test=2"
    assert data_cli(["check", "mscoco", "--data_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: Dataset 'mscoco' not found: expected {tmp_path}/mscoco/dataset_coco.json (root from "
        f"--data_dir / $LEMON_DATA_DIR). See DataSources.md#mscoco."
    )
    root, spec = fake("csv")
    assert (
        data_cli(
            [
                "check",
                "csv",
                "--data_path",
                spec.options["data_path"],
                "--clean_column",
                "clean_caption",
            ]
        )
        == 0
    )
    assert "OK csv (captioning): train=24 val=3 test=3" in capsys.readouterr().out


def test_list_cli_shows_every_dataset(fake, capsys):
    root, _ = fake("flickr30k")
    assert data_cli(["list", "--data_dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert all(re.search(rf"^{n}\s", out, re.MULTILINE) for n in DATASETS.names())
    assert re.search(r"^flickr30k\s+captioning\s+found\s+noise: random, noun$", out, re.MULTILINE)
    assert re.search(r"^mscoco\s+captioning\s+missing", out, re.MULTILINE)


def test_every_dataset_has_a_datasources_section():
    text = (Path(__file__).resolve().parents[2] / "DataSources.md").read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9_]+)"></a>', text))
    assert set(NAMES) <= anchors


# ----------------------------------------------------------------------------- end to end (run_lemon)
@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A randomly initialised tiny open_clip checkpoint folder (no download)."""
    embed_train = pytest.importorskip("lemon.train", reason="the embedding stage is not available")
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny_clip")
    torch.manual_seed(0)
    cfg = embed_train.model_config("lemon-tiny")
    model = embed_train.build_model(cfg)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        folder / "open_clip_model.safetensors",
    )
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": embed_train.preprocess_config(cfg)})
    )
    return folder


def _run(tmp_path: Path, tiny_clip: Path, *flags: str) -> pd.DataFrame:
    import run_lemon

    out = tmp_path / "run"
    argv = [
        *flags,
        "--clip_model",
        str(tiny_clip),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--output_dir",
        str(out),
        "--knn_k",
        "3",
        "--device",
        "cpu",
        "--num_workers",
        "0",
        "--batch_size",
        "16",
    ]
    assert run_lemon.main(argv) == 0
    assert (out / "done").is_file()
    return pd.read_csv(out / "scores.csv")


@pytest.mark.slow
def test_end_to_end_mscoco_cat_noise(tmp_path, tiny_clip):
    spec = fake_mscoco(tmp_path / "data", counts={"train": 30, "restval": 6, "val": 12, "test": 12})
    scores = _run(
        tmp_path,
        tiny_clip,
        "--dataset",
        "mscoco",
        "--noise_type",
        "cat",
        "--noise_level",
        "0.4",
        "--data_dir",
        str(tmp_path / "data"),
    )
    for split, n in spec.sizes.items():
        rows = scores[scores["split"] == split]
        assert len(rows) == n and rows["is_mislabel"].sum() == int(
            0.4 * n
        )  # unique captions: exact
        assert rows["image"].str.startswith("mscoco/").all() and rows["score"].notna().all()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test/n"] == 12 and metrics["test/AUROC"] is not None
    assert "dataset mscoco (captioning)" in (tmp_path / "run" / "log.txt").read_text()


@pytest.mark.slow
def test_end_to_end_run_skips_and_counts_undecodable_images(tmp_path, tiny_clip):
    spec = fake_mscoco(
        tmp_path / "data",
        counts={"train": 30, "restval": 6, "val": 12, "test": 12},
        corrupt=1,
        truncated=2,
    )
    scores = _run(
        tmp_path,
        tiny_clip,
        "--dataset",
        "mscoco",
        "--noise_type",
        "random",
        "--noise_level",
        "0.4",
        "--data_dir",
        str(tmp_path / "data"),
    )
    train = scores[scores["split"] == "train"]
    assert (
        len(train) == spec.sizes["train"] - 2 == 33
    )  # 36 - 1 dropped at load - 2 dropped when decoded
    assert not set(spec.extra["truncated"]) & set(scores["image"]) and scores["score"].notna().all()
    loaded = load("mscoco", tmp_path / "data")["train"]  # idx still indexes the split as loaded
    assert [loaded.images.ids[i] for i in train["idx"]] == list(train["image"])
    args = json.loads((tmp_path / "run" / "args.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert args["data"]["dropped"] == {
        "train": {"unreadable image": 1, "undecodable image": 2},
        "val": {},
        "test": {},
    }
    assert (metrics["train/dropped"], metrics["train/n"]) == (3, 33)
    assert (metrics["train/dropped_unreadable_image"], metrics["val/dropped"]) == (1, 0)
    assert "not scoring 2 undecodable image(s)" in (tmp_path / "run" / "log.txt").read_text()


@pytest.mark.slow
def test_end_to_end_bring_your_own_csv(tmp_path, tiny_clip):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        write_image(tmp_path / "pics" / f"{i}.jpg", rng)
        clean = f"A dog next to a {['car', 'boat', 'ball'][i % 3]} in scene {i}."
        rows.append(
            {
                "file": f"pics/{i}.jpg",
                "text": f"Something else {i}." if i % 3 == 0 else clean,
                "truth": clean,
                "split": ["train"] * 4 + ["val"] * 2 + ["test"] * 2,
            }
        )
        rows[-1]["split"] = rows[-1]["split"][i % 8]
    pd.DataFrame(rows).to_csv(tmp_path / "mine.csv", index=False)
    scores = _run(
        tmp_path,
        tiny_clip,
        "--dataset",
        "csv",
        "--data_path",
        str(tmp_path / "mine.csv"),
        "--image_column",
        "file",
        "--text_column",
        "text",
        "--clean_column",
        "truth",
    )
    assert scores.groupby("split").size().to_dict() == {"test": 10, "train": 20, "val": 10}
    wrong = {r["text"]: r["text"] != r["truth"] for r in rows}
    assert (scores["is_mislabel"].astype(bool) == scores["text"].map(wrong)).all()
    assert scores["is_mislabel"].sum() == 14  # the table's own wrong captions (noise type 'real')
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val/AUROC"] is not None and metrics["test/AUROC"] is not None
