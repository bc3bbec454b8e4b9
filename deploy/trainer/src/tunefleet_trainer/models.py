"""Base models: loaded from a local directory or the hub cache, or built from a config.

``base_model`` is one of:

* a local directory written by ``save_pretrained`` (weights, config, tokenizer);
* a hub id (``Qwen/Qwen2.5-0.5B-Instruct``), loaded through the Hugging Face cache. With
  ``HF_HUB_OFFLINE=1`` (air-gapped machines) only the cache is read; a model that is not
  there is an error that says so, never a silent download attempt that hangs;
* ``scratch:<preset>``: a small Llama-architecture model initialised from the seed, with a
  byte-level BPE tokenizer trained on the run's own dataset and a ChatML template. It needs
  no download, so the quickstart and the tests train a real model anywhere. Its loss falls
  within a minute on two CPU cores; it learns the dataset's phrasing, not the world.

A scratch base is written to ``<checkpoint_dir>/scratch-base`` the first time and loaded
from there afterwards, so a resumed run tokenizes exactly as the interrupted one did.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunefleet_trainer.errors import TrainerError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["SCRATCH_PREFIX", "SCRATCH_PRESETS", "LoadedBase", "build_scratch_base", "load_base"]

SCRATCH_PREFIX = "scratch:"
SCRATCH_PRESETS: dict[str, dict[str, int]] = {
    # ~0.6M parameters: a quickstart epoch of 60 short conversations takes seconds on a CPU.
    "tiny": {
        "vocab_size": 1024,
        "hidden_size": 128,
        "intermediate_size": 352,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
    },
    # ~6M parameters, for trying the GPU paths without a download.
    "small": {
        "vocab_size": 4096,
        "hidden_size": 256,
        "intermediate_size": 704,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "max_position_embeddings": 2048,
    },
}
# ChatML, with generation markers around what the assistant writes (its end-of-turn
# token included, so the model learns to stop).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ (message['content'] or '') + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}{{ (message['content'] or '') + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>")


@dataclass
class LoadedBase:
    """A base model ready for training, its tokenizer, and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str
    """What the model was loaded from: a directory or a hub id."""
    scratch_dir: Path | None = None
    """For ``scratch:`` bases, the directory holding the initial weights and tokenizer."""


def build_scratch_base(preset: str, texts: Iterable[str], seed: int, directory: Path) -> None:
    """Train a tokenizer on ``texts``, initialise a model from ``preset``, save both."""
    if preset not in SCRATCH_PRESETS:
        known = ", ".join(f"{SCRATCH_PREFIX}{name}" for name in SCRATCH_PRESETS)
        raise TrainerError(f"unknown scratch model {SCRATCH_PREFIX}{preset} (known: {known})")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    shape = SCRATCH_PRESETS[preset]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=shape["vocab_size"],
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    bos, _, eos, pad = SPECIAL_TOKENS
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        model_max_length=shape["max_position_embeddings"],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    config = LlamaConfig(
        **{**shape, "vocab_size": len(tokenizer)},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    # Every process of a distributed run builds it (the same seed and data give the same
    # base) into a folder of its own and renames it into place: on shared storage (FSx on
    # HyperPod, every node) the first rename wins and the others use that one.
    partial = directory.with_name(f".{directory.name}.{socket.gethostname()}.{os.getpid()}.partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(directory)
    except OSError:
        if not (directory / "config.json").is_file():
            raise
        shutil.rmtree(partial, ignore_errors=True)


def _resolve_dtype(device: str, adapter: str) -> Any:
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.startswith("cuda") or adapter == "qlora":
        return torch.float16
    return torch.float32


def require_qlora_support(device: str) -> None:
    """Raise TrainerError unless 4-bit training can run here (a CUDA GPU and bitsandbytes)."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        raise TrainerError(
            "adapter qlora trains a 4-bit model and needs a CUDA GPU; none is available "
            f"here (device {device}). Use adapter lora, or run on a GPU target"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TrainerError(
            "adapter qlora needs bitsandbytes: pip install 'bitsandbytes>=0.45' on the GPU machine"
        )


def load_base(
    base_model: str,
    *,
    adapter: str,
    device: str,
    seed: int,
    texts: Iterable[str],
    scratch_dir: Path,
) -> LoadedBase:
    """The base model and tokenizer for training (quantised to 4 bits for QLoRA)."""
    source = base_model
    built: Path | None = None
    if base_model.startswith(SCRATCH_PREFIX):
        if not (scratch_dir / "config.json").is_file():
            scratch_dir.parent.mkdir(parents=True, exist_ok=True)
            build_scratch_base(base_model[len(SCRATCH_PREFIX) :], texts, seed, scratch_dir)
        source = str(scratch_dir)
        built = scratch_dir
    model, tokenizer = load_pretrained(source, adapter=adapter, device=device)
    return LoadedBase(model=model, tokenizer=tokenizer, source=source, scratch_dir=built)


def load_pretrained(
    source: str, *, adapter: str, device: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model and its tokenizer from a directory or the hub cache, or explain why not."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": _resolve_dtype(device, adapter)}
    if adapter == "qlora":
        require_qlora_support(device)
        import torch
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"]
            if kwargs["dtype"] != torch.float32
            else torch.float16,
        )
    looks_local = source.startswith(("/", ".", "~")) or Path(source).exists()
    if looks_local and not Path(source).expanduser().is_dir():
        raise TrainerError(f"base model {source}: no such directory")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        # The hub client's messages say "couldn't connect" or "not a valid model identifier";
        # ours says what to do on an offline machine.
        raise TrainerError(
            f"base model {source}: cannot be loaded ({str(exc).splitlines()[0]}). Put it in "
            "the Hugging Face cache (huggingface-cli download) or set base_model to a local "
            "directory"
        ) from None
    if tokenizer.chat_template is None:
        raise TrainerError(
            f"base model {source}: its tokenizer has no chat template; use an instruct or "
            "chat model, or add a chat_template to its tokenizer_config.json"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
