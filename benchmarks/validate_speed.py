"""Speed and memory of `tunefleet data validate` against the cookbook's approach.

    python benchmarks/validate_speed.py [--examples 100000] [--sizes 50000,100000]

Makes a multilingual chat dataset (about 2 KB per example, so 100,000 examples is about
200 MB) under .bench/, then runs, each in its own process:

* baseline: the OpenAI cookbook's chat data-prep notebook as written: load every line into
  a list with json.loads, run its format checks, then count tokens with its
  num_tokens_from_messages and num_assistant_tokens_from_messages (which encode every
  assistant message twice), single process;
* tunefleet: `tunefleet data validate FILE --json` (streaming, every message encoded
  once, worker processes on every core, plus duplicate and PII checks the baseline lacks).

Both use cl100k_base (the baseline's encoding), loaded the same offline way. Peak memory is
the largest sum of PSS (proportional set size: shared pages split between the processes
sharing them) over the whole process tree, sampled every 50 ms; RSS would count the
tokenizer that workers share once per worker. Results are
printed as a table and written to .bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"

WORDS = {
    "en": [
        "the",
        "support",
        "ticket",
        "was",
        "resolved",
        "after",
        "we",
        "reset",
        "the",
        "account",
        "and",
        "checked",
        "billing",
        "history",
        "again",
    ],
    "de": [
        "der",
        "Kunde",
        "hat",
        "die",
        "Rechnung",
        "erhalten",
        "und",
        "möchte",
        "die",
        "Zahlung",
        "für",
        "den",
        "nächsten",
        "Monat",
        "ändern",
    ],
    "fr": [
        "le",
        "client",
        "a",
        "reçu",
        "la",
        "facture",
        "et",
        "souhaite",
        "modifier",
        "le",
        "paiement",
        "pour",
        "le",
        "mois",
        "prochain",
    ],
    "es": [
        "el",
        "cliente",
        "recibió",
        "la",
        "factura",
        "y",
        "quiere",
        "cambiar",
        "el",
        "pago",
        "del",
        "próximo",
        "mes",
        "cuanto",
        "antes",
    ],
    "ru": [
        "клиент",
        "получил",
        "счёт",
        "и",
        "хочет",
        "изменить",
        "оплату",
        "на",
        "следующий",
        "месяц",
        "как",
        "можно",
        "скорее",
    ],
    "ja": [
        "お客様は請求書を受け取り",
        "来月の支払い方法を",
        "変更したいと",
        "考えています",
        "早めに",
    ],
    "zh": ["客户", "收到了", "发票", "并希望", "尽快", "更改", "下个月", "的", "付款", "方式"],
    "ar": [
        "تلقى",
        "العميل",
        "الفاتورة",
        "ويريد",
        "تغيير",
        "طريقة",
        "الدفع",
        "للشهر",
        "القادم",
        "في",
        "أقرب",
        "وقت",
    ],
    "hi": [
        "ग्राहक",
        "को",
        "बिल",
        "मिल",
        "गया",
        "है",
        "और",
        "वह",
        "अगले",
        "महीने",
        "का",
        "भुगतान",
        "बदलना",
        "चाहता",
        "है",
    ],
}


def sentence(rng: random.Random, words: int) -> str:
    vocab = WORDS[rng.choice(list(WORDS))]
    text = " ".join(rng.choice(vocab) for _ in range(words))
    return text + rng.choice([".", "!", "?", " 🙂", ""])


def make_dataset(path: Path, examples: int, seed: int = 7) -> None:
    """Write ``examples`` chat examples, about 2 KB each, deterministically."""
    rng = random.Random(seed)
    system = {
        "role": "system",
        "content": "You are a multilingual support assistant. Answer briefly.",
    }
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(examples):
            messages = [system]
            for _ in range(rng.randint(1, 3)):
                messages.append({"role": "user", "content": sentence(rng, rng.randint(20, 90))})
                messages.append(
                    {"role": "assistant", "content": sentence(rng, rng.randint(30, 120))}
                )
            handle.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")


def baseline(path: str) -> dict[str, int]:
    """The cookbook's chat data-prep notebook, as written (single process, all in memory)."""
    from collections import defaultdict

    from tunefleet.data.tokens import get_encoding

    encoding = get_encoding("cl100k_base")
    with open(path, encoding="utf-8") as f:
        dataset = [json.loads(line) for line in f]
    format_errors: dict[str, int] = defaultdict(int)
    for ex in dataset:
        if not isinstance(ex, dict):
            format_errors["data_type"] += 1
            continue
        messages = ex.get("messages", None)
        if not messages:
            format_errors["missing_messages_list"] += 1
            continue
        for message in messages:
            if "role" not in message or "content" not in message:
                format_errors["message_missing_key"] += 1
            if any(
                k not in ("role", "content", "name", "function_call", "weight") for k in message
            ):
                format_errors["message_unrecognized_key"] += 1
            if message.get("role", None) not in ("system", "user", "assistant", "function"):
                format_errors["unrecognized_role"] += 1
            content = message.get("content", None)
            function_call = message.get("function_call", None)
            if (not content and not function_call) or not isinstance(content, str):
                format_errors["missing_content"] += 1
        if not any(message.get("role", None) == "assistant" for message in messages):
            format_errors["example_missing_assistant_message"] += 1

    def num_tokens_from_messages(messages, tokens_per_message=3, tokens_per_name=1):  # type: ignore[no-untyped-def]
        num_tokens = 0
        for message in messages:
            num_tokens += tokens_per_message
            for key, value in message.items():
                num_tokens += len(encoding.encode(value))
                if key == "name":
                    num_tokens += tokens_per_name
        num_tokens += 3
        return num_tokens

    def num_assistant_tokens_from_messages(messages):  # type: ignore[no-untyped-def]
        num_tokens = 0
        for message in messages:
            if message["role"] == "assistant":
                num_tokens += len(encoding.encode(message["content"]))
        return num_tokens

    n_missing_system = n_missing_user = 0
    n_messages, convo_lens, assistant_message_lens = [], [], []
    for ex in dataset:
        messages = ex["messages"]
        if not any(message["role"] == "system" for message in messages):
            n_missing_system += 1
        if not any(message["role"] == "user" for message in messages):
            n_missing_user += 1
        n_messages.append(len(messages))
        convo_lens.append(num_tokens_from_messages(messages))
        assistant_message_lens.append(num_assistant_tokens_from_messages(messages))
    return {
        "examples": len(dataset),
        "errors": sum(format_errors.values()),
        "total_tokens": sum(convo_lens),
        "max_tokens": max(convo_lens),
        "max_assistant_tokens": max(assistant_message_lens),
    }


def measure(argv: list[str]) -> tuple[float, int, str]:
    """Run ``argv``; return wall seconds, peak PSS of its whole process tree, and stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    output_parts: list[str] = []
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_full_info().pss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    assert proc.stdout is not None
    output_parts.append(proc.stdout.read())
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return elapsed, peak, "".join(output_parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument(
        "--sizes", default="50000,100000", help="example counts for the memory-growth check"
    )
    parser.add_argument("--baseline-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("file", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_only:
        print(json.dumps(baseline(args.file)))
        return
    WORK.mkdir(exist_ok=True)
    os.environ.setdefault("TUNEFLEET_CACHE_DIR", str(WORK / "cache"))
    sizes = sorted({args.examples, *(int(s) for s in args.sizes.split(",") if s)})
    files = {}
    for n in sizes:
        path = WORK / f"chat-{n}.jsonl"
        if not path.exists():
            make_dataset(path, n)
        files[n] = path
    rows = []
    main_file = files[args.examples]
    size_mb = main_file.stat().st_size / 1e6
    base_s, base_rss, base_out = measure(
        [sys.executable, __file__, "--baseline-only", str(main_file)]
    )
    base = json.loads(base_out)
    rows.append(
        ("cookbook baseline", args.examples, size_mb, base_s, base_rss, base["total_tokens"])
    )
    tool = [
        sys.executable,
        "-m",
        "tunefleet",
        "data",
        "validate",
        "--model",
        "gpt-4",
        "--max-tokens",
        "4096",
        "--json",
    ]
    ours: dict[int, tuple[float, int]] = {}
    for n, path in files.items():
        seconds, rss, out = measure([*tool, str(path)])
        report = json.loads(out)
        if n == args.examples:
            assert report["tokens_per_example"]["max"] == base["max_tokens"], (
                "token counts must agree"
            )
            assert report["total_tokens"] == base["total_tokens"], "token counts must agree"
        ours[n] = (seconds, rss)
        rows.append(
            ("tunefleet", n, path.stat().st_size / 1e6, seconds, rss, report["total_tokens"])
        )
    print(
        f"{'run':<18} {'examples':>9} {'MB':>7} {'seconds':>8} {'examples/s':>11} {'MB/s':>6} {'tokens/s':>10} {'peak PSS MB':>11}"
    )
    for name, n, mb, seconds, rss, tokens in rows:
        print(
            f"{name:<18} {n:>9,} {mb:>7.1f} {seconds:>8.2f} {n / seconds:>11,.0f} {mb / seconds:>6.1f} {tokens / seconds:>10,.0f} {rss / 2**20:>11.0f}"
        )
    speedup = base_s / ours[args.examples][0]
    print(f"speed-up over the cookbook approach: {speedup:.1f}x on {os.cpu_count()} cores")
    (WORK / "results.json").write_text(
        json.dumps({"rows": rows, "speedup": speedup, "cpu_count": os.cpu_count()}, indent=2)
    )


if __name__ == "__main__":
    main()
