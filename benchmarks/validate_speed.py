"""Speed and memory of `tunefleet data validate` against the cookbook's approach and the
physical limit.

    python benchmarks/validate_speed.py [--examples 100000] [--sizes 50000,100000] [--repeat 3]

Makes a multilingual chat dataset (about 2 KB per example, so 100,000 examples is about
200 MB) under .bench/, then runs, each in its own process:

* baseline: the OpenAI cookbook's chat data-prep notebook as written: load every line into
  a list with json.loads, run its format checks, then count tokens with its
  num_tokens_from_messages and num_assistant_tokens_from_messages (which encode every
  assistant message twice), single process;
* tunefleet: `tunefleet data validate FILE --no-cache --json` (streaming, every message
  encoded once, worker processes on every core, plus duplicate and PII checks the baseline
  lacks; --no-cache so that the on-disk report cache never answers);
* the physical limit, two ways: "one pass / 2" is one process that reads the file, parses
  each line (orjson, as tunefleet does) and counts the tokens of every message's content
  once with tunefleet's own counter (bpe-openai's native tokenizer), timed from its first
  read to its last count and divided by 2 (cores); "one pass on 2 processes" actually runs
  it as two processes, each on half the file (split at a line boundary), timed from the
  outside like tunefleet (so it pays interpreter start-up and tokenizer loading too).
  Nothing less than this can count the tokens of every message on two cores.

All use cl100k_base (the baseline's encoding), loaded the same offline way. Peak memory is
the largest sum of PSS (proportional set size: shared pages split between the processes
sharing them) over the whole process tree, sampled every 50 ms; RSS would count the
tokenizer that workers share once per worker. Sampling costs about a quarter of a core,
so runs that use both cores are timed without it and their memory is taken from one more
run of each, sampled (the baseline uses one core and is timed while sampled). Every run but
the baseline is repeated (``--repeat``, interleaved, since a shared machine is noisy) and
its median reported.
Results are printed as a table and written to .bench/results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import psutil
from _machine import cpu_ticks, percent, steal_share

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


def one_pass(path: str, start: int = 0, end: int | None = None) -> dict[str, float | int]:
    """The physical limit: read, parse and count every message's content once, nothing else.

    Covers the lines that start in [start, end) bytes of the file (all of it by default).
    ``seconds`` is timed inside the process, from the first read to the last count.
    """
    from tunefleet.data.tokens import token_counter

    count, backend = token_counter("cl100k_base")
    assert backend == "bpe-openai", "the limit must use the counter tunefleet uses"
    started = time.perf_counter()
    tokens = examples = 0
    with open(path, "rb") as handle:
        if start:
            handle.seek(start - 1)
            handle.readline()  # the line that holds byte start-1 belongs to the first half
        while end is None or handle.tell() < end:
            line = handle.readline()
            if not line:
                break
            examples += 1
            for message in orjson.loads(line)["messages"]:
                tokens += count(message["content"])
    return {
        "examples": examples,
        "content_tokens": tokens,
        "seconds": time.perf_counter() - started,
    }


def timed(argv: list[str]) -> tuple[float, str]:
    """Run ``argv`` with nothing else running beside it; return wall seconds and stdout.

    Timed runs are not sampled for memory: reading /proc/PID/smaps of every process in the
    tree every 50 ms costs about a quarter of a core, which on two cores slows whatever
    runs on both of them (tunefleet, one pass on 2 processes) by several percent.
    """
    started = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return elapsed, proc.stdout


def measure(argv: list[str]) -> tuple[float, int, str]:
    """Run ``argv``; return wall seconds, peak PSS of its whole process tree, and stdout.

    The sampling slows a run that uses every core: see :func:`timed`.
    """
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
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each measurement but the baseline"
    )
    parser.add_argument(
        "--skip-baseline", action="store_true", help="skip the (slow) cookbook baseline"
    )
    parser.add_argument("--baseline-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one-pass", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("file", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_only:
        print(json.dumps(baseline(args.file)))
        return
    if args.one_pass:
        start, end = args.one_pass
        print(json.dumps(one_pass(args.file, start, end if end >= 0 else None)))
        return
    WORK.mkdir(exist_ok=True)
    os.environ.setdefault("TUNEFLEET_CACHE_DIR", str(WORK / "cache"))
    # As installed, Python reads modules from cached bytecode; without it every run (and the
    # fork server) compiles tunefleet's modules from source first, a few tenths of a second
    # no user pays. The warm-up run below writes the bytecode.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sizes = sorted({args.examples, *(int(s) for s in args.sizes.split(",") if s)})
    files = {}
    for n in sizes:
        path = WORK / f"chat-{n}.jsonl"
        if not path.exists():
            make_dataset(path, n)
        files[n] = path
    main_file = files[args.examples]
    size_mb = main_file.stat().st_size / 1e6
    rows: list[Row] = []

    def row(name: str, n: int, mb: float, seconds: float, pss: int, tokens: int) -> None:
        rows.append(Row(name, n, mb, seconds, pss, tokens))

    base_s = None
    if not args.skip_baseline:
        base_s, base_pss, base_out = measure(
            [sys.executable, __file__, "--baseline-only", str(main_file)]
        )
        base = json.loads(base_out)
        row("cookbook baseline", args.examples, size_mb, base_s, base_pss, base["total_tokens"])
    tool = [
        sys.executable,
        "-m",
        "tunefleet",
        "data",
        "validate",
        "--no-cache",  # the on-disk report cache would answer a repeated run without work
        "--model",
        "gpt-4",
        "--max-tokens",
        "4096",
        "--json",
    ]
    half = _line_boundary(main_file, main_file.stat().st_size // 2)
    one_pass_argv = [sys.executable, __file__, "--one-pass"]
    limit_1: list[float] = []  # one pass, timed inside the process
    content_tokens = 0
    limit_2: list[float] = []  # one pass on two processes, timed outside
    halves = [
        [*one_pass_argv, "0", str(half), str(main_file)],
        [*one_pass_argv, str(half), "-1", str(main_file)],
    ]
    ours: dict[int, list[tuple[float, dict[str, Any]]]] = {n: [] for n in files}
    timed([*tool, str(files[sizes[0]])])  # warm-up: bytecode written, the files in the page cache
    round_steal: list[float | None] = []  # CPU steal in each round (see _machine)
    rounds_began = cpu_ticks()
    for _ in range(args.repeat):  # interleaved, so that a busy spell hits every kind of run
        round_began = cpu_ticks()
        _seconds, out = timed([*one_pass_argv, "0", "-1", str(main_file)])
        passed = json.loads(out)
        limit_1.append(passed["seconds"])
        content_tokens = passed["content_tokens"]
        limit_2.append(measure_together(halves, sample=False)[0])
        for n, path in files.items():
            seconds, out = timed([*tool, str(path)])
            ours[n].append((seconds, json.loads(out)))
        round_steal.append(steal_share(round_began, cpu_ticks()))
    steal = steal_share(rounds_began, cpu_ticks())
    # Memory from runs of their own, sampled (which slows them: their times are not used).
    peak_pss = {n: measure([*tool, str(path)])[1] for n, path in files.items()}
    two_pss = measure_together(halves)[1]
    for n, path in files.items():
        runs = ours[n]
        report = runs[0][1]
        if n == args.examples and base_s is not None:
            assert report["tokens_per_example"]["max"] == base["max_tokens"], (
                "token counts must agree"
            )
            assert report["total_tokens"] == base["total_tokens"], "token counts must agree"
        assert all(r[1]["total_tokens"] == report["total_tokens"] for r in runs)
        row(
            "tunefleet",
            n,
            path.stat().st_size / 1e6,
            median([r[0] for r in runs]),
            peak_pss[n],
            report["total_tokens"],
        )
    one_half = median(limit_1) / 2
    row("one pass / 2", args.examples, size_mb, one_half, 0, content_tokens)
    two_s = median(limit_2)
    row("one pass, 2 procs", args.examples, size_mb, two_s, two_pss, content_tokens)
    print(
        f"{'run':<18} {'examples':>9} {'MB':>7} {'seconds':>8} {'examples/s':>11} {'MB/s':>6} {'tokens/s':>10} {'peak PSS MB':>11}"
    )
    for r in rows:
        n, mb, seconds = r.examples, r.MB, r.seconds
        pss_text = f"{r.peak_pss / 2**20:>11.0f}" if r.peak_pss else f"{'-':>11}"
        print(
            f"{r.run:<18} {n:>9,} {mb:>7.1f} {seconds:>8.2f} {n / seconds:>11,.0f} {mb / seconds:>6.1f} {r.tokens / seconds:>10,.0f} {pss_text}"
        )
    ours_s = median([r[0] for r in ours[args.examples]])
    ratios = {
        "vs_one_pass_half": ours_s / one_half,
        "vs_one_pass_two_processes": ours_s / two_s,
        "speedup_over_baseline": base_s / ours_s if base_s is not None else None,
    }
    print(
        f"tunefleet on {args.examples:,} examples: {ours_s:.2f} s (median of {args.repeat}); "
        f"{ratios['vs_one_pass_half']:.2f}x one pass / 2 ({one_half:.2f} s), "
        f"{ratios['vs_one_pass_two_processes']:.2f}x one pass on 2 processes ({two_s:.2f} s)"
    )
    known = [share for share in round_steal if share is not None]
    print(
        f"CPU steal during the timed rounds: {percent(steal)}"
        + (f" (rounds: {', '.join(percent(share) for share in known)})" if known else "")
    )
    if base_s is not None:
        print(
            f"speed-up over the cookbook approach: {base_s / ours_s:.1f}x on {os.cpu_count()} cores"
        )
    (WORK / "results.json").write_text(
        json.dumps(
            {
                "rows": [r._asdict() for r in rows],
                **ratios,
                "speedup": ratios["speedup_over_baseline"],
                "runs": {
                    "one_pass_seconds": limit_1,
                    "one_pass_two_processes_seconds": limit_2,
                    "tunefleet_seconds": {n: [r[0] for r in runs] for n, runs in ours.items()},
                },
                "cpu_count": os.cpu_count(),
                "cpu_steal": {"timed_rounds": steal, "per_round": round_steal},
            },
            indent=2,
        )
    )


class Row(NamedTuple):
    """One line of the table (peak_pss 0: not measured)."""

    run: str
    examples: int
    MB: float
    seconds: float
    peak_pss: int
    tokens: int


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _line_boundary(path: Path, near: int) -> int:
    """The offset just after the first newline at or after byte ``near``."""
    with path.open("rb") as handle:
        handle.seek(near)
        handle.readline()
        return handle.tell()


def measure_together(argvs: list[list[str]], *, sample: bool = True) -> tuple[float, int]:
    """Run the commands at once; wall seconds until the last ends, and peak PSS of them all
    (0 when not ``sample``: see :func:`timed`)."""
    started = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL) for argv in argvs]
    roots = [psutil.Process(p.pid) for p in procs]
    peak = 0
    while sample and any(p.poll() is None for p in procs):
        total = 0
        for root in roots:
            with contextlib.suppress(psutil.Error):
                total += root.memory_full_info().pss
        peak = max(peak, total)
        time.sleep(0.05)
    for proc in procs:
        proc.wait()
    elapsed = time.perf_counter() - started
    if any(p.returncode != 0 for p in procs):
        raise SystemExit(f"{argvs} failed")
    return elapsed, peak


if __name__ == "__main__":
    main()
