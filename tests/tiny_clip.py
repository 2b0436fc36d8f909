"""Tiny randomly initialised CLIP checkpoints for tests (offline, a few MB, built in about a second).

They are written in the same layouts users bring, so tests load them through the user code path::

    from tiny_clip import tiny_clip_checkpoint
    path = tiny_clip_checkpoint(tmp_path)                  # open_clip layout
    path = tiny_clip_checkpoint(tmp_path, "transformers")  # transformers save_pretrained layout
    run_lemon.main([..., "--clip_model", str(path)])

The transformers tokenizer files are derived from the BPE vocabulary that ships inside open_clip's wheel
(the same 49,408-token vocabulary as OpenAI CLIP's), so nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_IMAGE_SIZE = 32


def tiny_open_clip_checkpoint(folder: Path | str, seed: int = 0) -> Path:
    """An open_clip folder (config + safetensors) of the 'lemon-tiny' architecture, random weights."""
    import torch

    from lemon.train import build_model, model_config, save_open_clip

    cfg = model_config("lemon-tiny")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return save_open_clip(model, cfg, folder)


def write_clip_vocabulary(folder: Path) -> tuple[Path, Path]:
    """vocab.json + merges.txt (transformers CLIPTokenizer format) from open_clip's bundled BPE file."""
    from open_clip.tokenizer import SimpleTokenizer

    bpe = SimpleTokenizer()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(tok, tok): i for tok, i in bpe.encoder.items()}
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )
    return vocab_file, merges_file


def tiny_hf_clip_checkpoint(folder: Path | str, seed: int = 0) -> Path:
    """A transformers CLIPModel folder (model, tokenizer, image processor), tiny and random."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    config = CLIPConfig(
        text_config={**layers, "vocab_size": 49408, "max_position_embeddings": 77},
        vision_config={**layers, "image_size": TINY_IMAGE_SIZE, "patch_size": 16},
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    model.save_pretrained(folder)
    write_clip_vocabulary(folder)
    CLIPTokenizer.from_pretrained(folder).save_pretrained(
        folder
    )  # adds tokenizer.json / its config
    CLIPImageProcessor(
        size={"shortest_edge": TINY_IMAGE_SIZE},
        crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
    ).save_pretrained(folder)
    return folder


def tiny_clip_checkpoint(folder: Path | str, layout: str = "open_clip", seed: int = 0) -> Path:
    """A tiny random checkpoint folder in ``layout`` ('open_clip' or 'transformers'); pass it to --clip_model."""
    makers = {"open_clip": tiny_open_clip_checkpoint, "transformers": tiny_hf_clip_checkpoint}
    if layout not in makers:
        raise ValueError(f"Unknown checkpoint layout '{layout}'. Available: {', '.join(makers)}.")
    return makers[layout](Path(folder) / f"tiny_{layout}", seed)


def tiny_clip_in_hub_cache(
    hf_home: Path | str, repo: str = "openai/clip-vit-base-patch32", seed: int = 0
) -> Path:
    """A tiny random transformers CLIP saved where huggingface_hub keeps a download of ``repo``
    (``$HF_HOME/hub/models--org--name/snapshots/<commit>/`` and ``refs/main``), so a run that names
    ``repo`` (the default embedder) loads it offline (``HF_HUB_OFFLINE=1``) through the Hub's own lookup."""
    entry = Path(hf_home) / "hub" / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    snapshot = tiny_hf_clip_checkpoint(entry / "snapshots" / commit, seed)
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text(commit)
    return snapshot
