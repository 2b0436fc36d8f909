"""Hugging Face models of the model-based scorers: loading that never hangs offline and fails in one line,
checks that the weights and the tokenizer really loaded, fp16 on CUDA, and the yes/no answer tokens.

Loading goes through :func:`lemon.embed.hub.hub_session` (a short probe, then huggingface_hub's offline mode
when the Hub is unreachable), so a checkpoint missing from the local cache fails at once with a message naming
the scorer's own model flag instead of minutes of retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lemon.core.errors import ModelNotFoundError
from lemon.data.base import digest, file_stamps
from lemon.embed.base import slug
from lemon.embed.hub import hub_session, missing_model, one_line

#: (what is loaded, e.g. 'model' / 'processor', a ``from_pretrained``-like callable)
Loader = tuple[str, Callable[..., Any]]


def model_identity(source: str) -> str:
    """Filesystem-safe identity of a checkpoint (a cache folder name): the Hub id, or a local folder's name
    plus a digest of its files' names, sizes and modification times (cheap even for a 26 GB model, and new
    whenever a file is replaced)."""
    path = Path(source).expanduser()
    if not path.is_dir():
        return slug(f"hf-{source}")
    files = sorted(p for p in path.rglob("*") if p.is_file())
    stamp = digest("\n".join(str(p.relative_to(path)) for p in files), file_stamps(files))
    return f"{slug('local-' + path.name)}-{stamp[:12]}"


def load_pretrained(loaders: Sequence[Loader], source: str, scorer: str, flag: str) -> list[Any]:
    """``loader(source, **kwargs)`` for each loader: a local folder with ``local_files_only``, a Hub id
    inside :func:`hub_session`. Any failure is a one-line ModelNotFoundError naming ``flag``."""
    path = Path(source).expanduser()
    local = path.is_dir()
    if not local and source.startswith(("/", ".", "~")):
        raise ModelNotFoundError(
            f"{flag} {source}: no such folder; pass a folder written by save_pretrained or a "
            "Hugging Face Hub id."
        )
    kwargs = {"local_files_only": True} if local else {}
    out = []
    with hub_session() as online:
        for label, loader in loaders:
            try:
                out.append(loader(str(path) if local else source, **kwargs))
            except (OSError, ValueError, KeyError) as err:
                if not local:
                    raise missing_model(
                        scorer, f"'{source}' ({label})", online, err, flag
                    ) from None
                raise ModelNotFoundError(
                    f"Scorer '{scorer}' cannot load its {label} from {path} ({flag}): "
                    f"{one_line(err)}. The folder must hold what save_pretrained writes (config.json, "
                    "the weights, the tokenizer and processor files)."
                ) from None
    return out


def load_checked(
    model_class: Any,
    companion_class: Any,
    source: str,
    scorer: str,
    flag: str,
    precision: str,
    labels: tuple[str, str] = ("model", "processor"),
) -> tuple[Any, Any]:
    """(model, processor or tokenizer) of checkpoint ``source``: ``model_class.from_pretrained`` in
    ``precision`` and ``companion_class.from_pretrained``, loaded by :func:`load_pretrained` (``labels``
    name them in its errors), every weight checked present (:func:`check_complete`)."""
    dtype = torch_dtype(precision)
    (model, info), companion = load_pretrained(
        [
            (
                labels[0],
                lambda s, **kw: model_class.from_pretrained(
                    s, output_loading_info=True, dtype=dtype, **kw
                ),
            ),
            (labels[1], lambda s, **kw: companion_class.from_pretrained(s, **kw)),
        ],
        source,
        scorer,
        flag,
    )
    check_complete(info, source, scorer)
    return model, companion


def check_complete(info: dict[str, Any], source: str, scorer: str) -> None:
    """Refuse a partly random model: every weight must have been in the checkpoint."""
    missing = [k for k in info.get("missing_keys", ()) if not k.endswith("position_ids")]
    if missing:
        raise ModelNotFoundError(
            f"The weights of '{source}' ({scorer}) did not fully load: {len(missing)} tensors missing "
            f"(e.g. {min(missing)}); the model would be partly random. Re-download it or pass a "
            "complete checkpoint folder."
        )


def check_vocabulary(tokenizer: Any, vocab_size: int, source: str, slack: int = 0) -> None:
    """The tokenizer must cover (almost) the model's vocabulary: offline, transformers can return a
    placeholder of a few tokens without raising, and a tokenizer built with ``vocab_file=`` ignores it."""
    n = len(tokenizer)
    if n < 0.9 * vocab_size or n > vocab_size + slack:
        raise ModelNotFoundError(
            f"The tokenizer of '{source}' has {n} tokens but its model's vocabulary has {vocab_size}: "
            "the tokenizer files did not load. Re-download the checkpoint or save its tokenizer "
            "(tokenizer.json) beside the weights."
        )


def torch_dtype(precision: str) -> Any:
    """Weights dtype of a resolved precision ('fp32', 'fp16', 'bf16')."""
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)


@contextlib.contextmanager
def inference(device: str, precision: str) -> Iterator[None]:
    """inference_mode, plus autocast in ``precision`` on CUDA (the weights are already in it)."""
    import torch

    cuda = str(device).startswith("cuda") and precision in ("fp16", "bf16")
    amp = torch.autocast("cuda", dtype=torch_dtype(precision)) if cuda else contextlib.nullcontext()
    with torch.inference_mode(), amp:
        yield


def answer_token_ids(tokenizer: Any, word: str) -> list[int]:
    """Ids of the single tokens spelling ``word`` at the start of an answer, in any casing, with or
    without a leading space ('Yes', '▁Yes' of SentencePiece, 'ĠYes' of byte-level BPE, 'yes', 'YES').

    Blank pieces (a lone '▁') are skipped. A tokenizer that splits the word cannot give p(word) from one
    next-token distribution and is refused.
    """
    ids: set[int] = set()
    for form in {word.lower(), word.capitalize(), word.upper()}:
        for variant in (form, " " + form, "\n" + form):
            toks = [
                t
                for t in tokenizer.encode(variant, add_special_tokens=False)
                if tokenizer.decode([t]).strip()
            ]
            if toks and tokenizer.decode([toks[0]]).strip().lower() == word.lower():
                ids.add(int(toks[0]))
    if not ids:
        raise ModelNotFoundError(
            f"The tokenizer has no single token for {word!r}, so p({word}) cannot be read from the "
            "next-token probabilities; use a checkpoint whose tokenizer has one."
        )
    return sorted(ids)


def new_tokens(generated: Any, input_ids: Any) -> Any:
    """The generated continuation: decoder-only models return prompt + new tokens, others new ones only."""
    import torch

    n = input_ids.shape[1]
    if generated.shape[1] > n and torch.equal(generated[:, :n].to(input_ids.device), input_ids):
        return generated[:, n:]
    return generated
