"""Tiny randomly initialised checkpoints of the model-based scorers' models, built offline in about a second.

Each builder writes a folder in the real on-disk layout (config.json, model.safetensors, tokenizer.json and
tokenizer_config.json, processor config, chat template) with ``save_pretrained``, so a scorer loads it exactly
as a downloaded checkpoint::

    from tiny_hf_models import tiny_blip_itm
    run_lemon.main([..., "--scorer", "blip_itm", "--blip_model", str(tiny_blip_itm(tmp_path / "blip"))])

Sizes suit a CPU test: 2 layers, width 32, 32x32 images, vocabularies of a few hundred tokens. The
tokenizers get their vocabularies as ``vocab=`` / ``merges=`` (transformers 5 ignores ``vocab_file=``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORDS = (
    "a an the of on in with and is are this that it there image picture photo caption correct yes no "
    "not only answer describe detail detailed provide given question label dog cat bird car ship horse "
    "red blue green white black large small circle square left right side shape"
).split()
PUNCT = list(".,?!\"'():;-/[]")
SIZE, PATCH, WIDTH = 32, 8, 32
VICUNA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] }} "
    "{% elif message['role'] == 'user' %}USER: {% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %} {% else %}ASSISTANT: {% for c in message['content'] %}{{ c['text'] }}{% endfor %}"
    "</s>{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
    "<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def _seeded(seed: int, build):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


def bert_tokenizer(model_max_length: int = 64) -> Any:
    """A BERT WordPiece tokenizer with BLIP's extra tokens ([DEC] = the decoder's bos, [ENC])."""
    from transformers import BertTokenizer

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *PUNCT]
    tokens += list("abcdefghijklmnopqrstuvwxyz0123456789")
    tokens += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + ["[DEC]", "[ENC]"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return BertTokenizer(
        vocab=vocab,
        bos_token="[DEC]",
        additional_special_tokens=["[ENC]"],
        model_max_length=model_max_length,
    )


def llama_tokenizer(extra: tuple[str, ...] = ("<image>",)) -> Any:
    """A Llama tokenizer (BPE with the '▁' word prefix and byte fallback): 'Yes' after a space is the
    single token '▁Yes', as in Vicuna's; ``<pad>`` and ``extra`` are added special tokens."""
    from transformers import LlamaTokenizer

    words = sorted({*WORDS, *(w.capitalize() for w in WORDS), "USER", "ASSISTANT", "YES", "NO"})
    vocab: dict[str, int] = {}
    for t in ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]:
        vocab.setdefault(t, len(vocab))
    for c in sorted({c for w in words for c in w} | set("▁") | set(PUNCT)):
        vocab.setdefault(c, len(vocab))
    merges: list[tuple[str, str]] = []
    for form in (f for w in words for f in (w, "▁" + w)):
        piece = form[0]
        for c in form[1:]:
            if (piece, c) not in merges:
                merges.append((piece, c))
            piece += c
            vocab.setdefault(piece, len(vocab))
    tok = LlamaTokenizer(vocab=vocab, merges=merges, legacy=False, add_prefix_space=True)
    tok.add_special_tokens({"pad_token": "<pad>"})
    tok.add_tokens(list(extra), special_tokens=True)
    return tok


def _llama_config(tok: Any) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def _vision(**extra: Any) -> dict[str, Any]:
    size = dict(hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_attention_heads=2)
    return dict(size, num_hidden_layers=2, image_size=SIZE, patch_size=PATCH, **extra)


def _blip(cls_name: str, folder: Path | str, seed: int) -> Path:
    import transformers
    from transformers import BlipConfig, BlipImageProcessor, BlipProcessor

    tok = bert_tokenizer()
    text = dict(
        vocab_size=len(tok),
        hidden_size=WIDTH,
        encoder_hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
        sep_token_id=tok.sep_token_id,
        eos_token_id=tok.sep_token_id,
    )
    config = BlipConfig(
        text_config=text, vision_config=_vision(), image_text_hidden_size=16, projection_dim=16
    )
    model = _seeded(seed, lambda: getattr(transformers, cls_name)(config))
    folder = Path(folder)
    model.save_pretrained(folder)
    processor = BlipImageProcessor(size={"height": SIZE, "width": SIZE})
    BlipProcessor(processor, tok).save_pretrained(folder)
    return folder


def tiny_blip_itm(folder: Path | str, seed: int = 0) -> Path:
    """BlipForImageTextRetrieval (the class of Salesforce/blip-itm-base-coco) + BlipProcessor."""
    return _blip("BlipForImageTextRetrieval", folder, seed)


def tiny_blip_captioner(folder: Path | str, seed: int = 1) -> Path:
    """BlipForConditionalGeneration (the class of Salesforce/blip-image-captioning-base)."""
    return _blip("BlipForConditionalGeneration", folder, seed)


def tiny_llava(folder: Path | str, seed: int = 2, next_version: bool = True) -> Path:
    """LlavaNextForConditionalGeneration (the layout of llava-hf/llava-v1.6-vicuna-13b-hf, any-resolution
    tiling), or with ``next_version=False`` LlavaForConditionalGeneration (llava-hf/llava-1.5-*)."""
    import transformers
    from transformers import CLIPVisionConfig

    tok = llama_tokenizer()
    common = dict(
        vision_config=CLIPVisionConfig(**_vision(projection_dim=16)),
        text_config=_llama_config(tok),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=(SIZE // PATCH) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    crop = dict(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    kind = "LlavaNext" if next_version else "Llava"
    if next_version:
        pinpoints = [[SIZE, SIZE], [SIZE, 2 * SIZE], [2 * SIZE, SIZE]]
        common["image_grid_pinpoints"] = pinpoints
        images = transformers.LlavaNextImageProcessor(**crop, image_grid_pinpoints=pinpoints)
    else:
        images = transformers.CLIPImageProcessor(**crop)
    config = getattr(transformers, f"{kind}Config")(**common)
    model = _seeded(seed, lambda: getattr(transformers, f"{kind}ForConditionalGeneration")(config))
    model.generation_config.pad_token_id = tok.pad_token_id
    folder = Path(folder)
    model.save_pretrained(folder)
    getattr(transformers, f"{kind}Processor")(
        image_processor=images,
        tokenizer=tok,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=VICUNA_TEMPLATE,
    ).save_pretrained(folder)
    return folder


def tiny_llm(folder: Path | str, seed: int = 4) -> Path:
    """LlamaForCausalLM with a Llama-3-style chat template (stand-in for Llama-3.1-8B-Instruct)."""
    from transformers import LlamaForCausalLM

    tok = llama_tokenizer(("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))
    tok.chat_template = LLAMA3_TEMPLATE
    model = _seeded(seed, lambda: LlamaForCausalLM(_llama_config(tok)))
    model.generation_config.pad_token_id = tok.pad_token_id
    folder = Path(folder)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_instructblip(folder: Path | str, seed: int = 5) -> Path:
    """InstructBlipForConditionalGeneration (the layout of Salesforce/instructblip-vicuna-7b): BLIP vision
    encoder, Q-Former with its BERT tokenizer, Llama language model."""
    from transformers import (
        BlipImageProcessor,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
    )

    tok = llama_tokenizer()
    qformer_tok = bert_tokenizer(model_max_length=512)
    n_query = 4
    config = InstructBlipConfig(
        vision_config=_vision(),
        qformer_config=dict(
            vocab_size=len(qformer_tok),
            hidden_size=WIDTH,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=2 * WIDTH,
            max_position_embeddings=512,
            encoder_hidden_size=WIDTH,
        ),
        text_config=_llama_config(tok).to_dict(),
        num_query_tokens=n_query,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
    )
    model = _seeded(seed, lambda: InstructBlipForConditionalGeneration(config))
    model.generation_config.pad_token_id = tok.pad_token_id
    folder = Path(folder)
    model.save_pretrained(folder)
    InstructBlipProcessor(
        image_processor=BlipImageProcessor(size={"height": SIZE, "width": SIZE}),
        tokenizer=tok,
        qformer_tokenizer=qformer_tok,
        num_query_tokens=n_query,
    ).save_pretrained(folder)
    return folder
