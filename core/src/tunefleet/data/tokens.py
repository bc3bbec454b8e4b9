"""Exact OpenAI token counts with no network.

tiktoken downloads its BPE files on first use. tunefleet instead seeds tiktoken's cache
from the copies that the ``bpe-openai`` wheel ships (gzip-compressed), after checking that
their sha256 equals the hash tiktoken itself expects for the file; then it loads the
encoding through tiktoken's own code path, which checks the hash again. A tampered or
truncated file is refused with :class:`~tunefleet.errors.TokenizerError`, never used.

Counting uses the fastest exact counter that can be verified: bpe-openai's native
tokenizer (GitHub's Rust ``bpe-openai`` crate; 2.5x faster than tiktoken here) when its
binary's sha256 is one of the pinned hashes of the bpe-openai 0.1.4 wheels, else tiktoken.
The native tokenizer compiles the same BPE files in; a test checks that both give the same
counts. ``TUNEFLEET_TOKENIZER=tiktoken`` forces tiktoken.

The model decides the encoding (tiktoken's own table: gpt-4o and newer use o200k_base,
gpt-4 and gpt-3.5 cl100k_base). Models tiktoken does not know (open-weight models) are
counted with cl100k_base and marked approximate: their exact count needs their own
tokenizer, which the trainer loads.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tunefleet.errors import TokenizerError

# The URL tiktoken loads each file from (its cache key is the URL's sha1) and the sha256
# tiktoken expects, both from tiktoken_ext/openai_public.py. A test reads that file to keep
# these in step with the installed tiktoken.
BPE_FILES: dict[str, tuple[str, str]] = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
FALLBACK_ENCODING = "cl100k_base"

_lock = threading.Lock()


@dataclass(frozen=True)
class EncodingChoice:
    """Which encoding counts a model's tokens, and whether the count is exact."""

    name: str
    exact: bool


def choose_encoding(model: str) -> EncodingChoice:
    """The tiktoken encoding for ``model``; cl100k_base (approximate) for unknown models."""
    import tiktoken.model

    base = model.split(":", 2)[1] if model.startswith("ft:") else model
    try:
        name = tiktoken.model.encoding_name_for_model(base)
    except KeyError:
        return EncodingChoice(FALLBACK_ENCODING, exact=False)
    if name not in BPE_FILES:
        return EncodingChoice(FALLBACK_ENCODING, exact=False)
    return EncodingChoice(name, exact=True)


def cache_dir() -> Path:
    """Where verified BPE files are kept for tiktoken (``TUNEFLEET_CACHE_DIR`` overrides)."""
    from tunefleet.kit.cache import cache_root

    return cache_root() / "tiktoken"


def verified_bpe_bytes(name: str) -> bytes:
    """The BPE file of encoding ``name`` from bpe-openai's wheel, checked against tiktoken's hash."""
    if name not in BPE_FILES:
        raise TokenizerError(f"no offline copy of encoding {name!r} (have: {', '.join(BPE_FILES)})")
    _, expected = BPE_FILES[name]
    # find_spec locates the package without importing it: bpe_openai's __init__ loads its
    # 74 MB native tokenizer, which tunefleet does not use.
    spec = importlib.util.find_spec("bpe_openai")
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    try:
        if not folders:
            raise FileNotFoundError("bpe_openai")
        packed = (Path(folders[0]) / "data" / f"{name}.tiktoken.gz").read_bytes()
    except FileNotFoundError:
        raise TokenizerError(
            f"the offline copy of {name} is missing: reinstall it with `pip install bpe-openai==0.1.4`"
        ) from None
    try:
        data = gzip.decompress(packed)
    except (OSError, EOFError) as exc:
        raise TokenizerError(f"the offline copy of {name} is corrupt ({exc})") from None
    return _checked(name, data, expected)


def _checked(name: str, data: bytes, expected: str) -> bytes:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise TokenizerError(
            f"{name}: sha256 {actual} does not match the expected {expected}; refusing to use it"
        )
    return data


def _seed_cache(name: str) -> Path:
    """Write the verified file where tiktoken looks for it; returns the cache directory."""
    url, expected = BPE_FILES[name]
    directory = cache_dir()
    target = directory / hashlib.sha1(url.encode()).hexdigest()  # noqa: S324 - tiktoken's cache key
    if target.is_file():
        try:
            _checked(name, target.read_bytes(), expected)
            return directory
        except TokenizerError:
            target.unlink(missing_ok=True)  # stale or tampered: replace it below
    data = verified_bpe_bytes(name)
    directory.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_bytes(data)
    os.replace(partial, target)  # atomic: concurrent processes never see half a file
    return directory


def get_encoding(name: str):  # type: ignore[no-untyped-def]  # tiktoken.Encoding, imported lazily
    """The tiktoken Encoding ``name``, loaded offline from verified data."""
    import tiktoken

    with _lock:
        directory = _seed_cache(name)
        previous = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
        try:
            return tiktoken.get_encoding(name)
        except Exception as exc:  # tiktoken raises plain ValueError/requests errors
            raise TokenizerError(f"could not load encoding {name}: {exc}") from None
        finally:
            if previous is None:
                os.environ.pop("TIKTOKEN_CACHE_DIR", None)
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = previous


DEFAULT_CONTEXT_LIMIT = 4096
"""Tokens per example assumed when neither the spec nor the provider names a limit (the
cookbook's conservative figure); providers that know their models' training context say
so through :class:`tunefleet.provider.ContextLimits`."""


# sha256 of bpe_openai/_bindings (the native tokenizer) in each bpe-openai 0.1.4 wheel, from
# the wheels' RECORD files. Any other binary is not used.
NATIVE_BINARY_SHA256 = frozenset(
    {
        "baecc9c49e418e37d580aeb5d3d78394ffbcc85cf8372e951de80f93baffa874",  # manylinux x86_64
        "f85c18656565b2a993cba4657733f8332b1df1dbc619f4428440071b73b58257",  # manylinux aarch64
        "104ae29a79cbbf34f8bb0efd07966524c7c89a2bd53d0cce2cd7045d7591101c",  # macOS arm64
        "b54b737a744956c0874b1f75e62ce89c6b738bfc68c81d50fb9d25f42ae8d381",  # Windows x86_64
    }
)

TokenCounter = Callable[[str], int]


def _native_binary() -> Path | None:
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("_bindings.*.so")) + sorted(folder.glob("_bindings*.pyd"))
    return found[0] if found else None


def _native_verified(binary: Path) -> bool:
    """True if ``binary`` hashes to a pinned sha256. Remembered per (path, size, mtime)."""
    stat = binary.stat()
    key = {"path": str(binary), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    record = cache_dir() / "native-tokenizer.json"
    try:
        remembered = json.loads(record.read_text())
        if remembered.get("key") == key and remembered.get("sha256") in NATIVE_BINARY_SHA256:
            return True
    except (OSError, ValueError):
        pass
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    if digest not in NATIVE_BINARY_SHA256:
        return False
    record.parent.mkdir(parents=True, exist_ok=True)
    partial = record.with_name(f"{record.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps({"key": key, "sha256": digest}))
    os.replace(partial, record)
    return True


def _load_native(binary: Path) -> ModuleType:
    # Load the extension module alone: importing the bpe_openai package would run its
    # __init__, which parses a vocabulary in Python that tunefleet never uses.
    spec = importlib.util.spec_from_file_location("bpe_openai._bindings", binary)
    if spec is None or spec.loader is None:  # pragma: no cover - only for a broken install
        raise TokenizerError(f"cannot load {binary}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def token_backend(name: str) -> str:
    """Which library :func:`token_counter` uses for encoding ``name``: bpe-openai or tiktoken."""
    if os.environ.get("TUNEFLEET_TOKENIZER", "auto") == "tiktoken":
        return "tiktoken"
    binary = _native_binary()
    return "bpe-openai" if binary is not None and _native_verified(binary) else "tiktoken"


def token_counter(name: str) -> tuple[TokenCounter, str]:
    """An exact token counter for encoding ``name`` and the backend behind it.

    The backend is ``bpe-openai`` (verified native binary) or ``tiktoken``.
    """
    if token_backend(name) == "bpe-openai":
        binary = _native_binary()
        assert binary is not None
        counter: TokenCounter = _load_native(binary).tokenizer_for_encoding(name).count
        return counter, "bpe-openai"
    encode = get_encoding(name).encode_ordinary

    def count(text: str) -> int:
        return len(encode(text))

    return count, "tiktoken"
