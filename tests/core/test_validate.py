"""Dataset validation: every code, the statistics, parallel equality, bounded findings."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunefleet.data import validate_dataset
from tunefleet.data.findings import CODES
from tunefleet.data.report import DatasetReport
from tunefleet.data.validate import ValidationOptions, validate_file
from tunefleet.errors import InputFileError
from tunefleet.plugins import Registry

SYS = {"role": "system", "content": "Be kind."}
USER = {"role": "user", "content": "Hi there"}
BOT = {"role": "assistant", "content": "Hello!"}


def chat(*messages: object, **extra: object) -> str:
    return json.dumps({"messages": list(messages), **extra})


CASES: dict[str, tuple[str, ...]] = {
    "E002": ('{"messages": [',),
    "E003": ("   ",),
    "E010": ("[1, 2]", '"text"'),
    "E011": ("{}", '{"messages": []}', '{"messages": "hi"}'),
    "E012": (chat(SYS, "hello", BOT),),
    "E013": (chat(SYS, {"content": "no role"}, BOT), chat(SYS, {"role": "user"}, BOT)),
    "E014": (chat(SYS, {**USER, "mood": "happy"}, BOT),),
    "E015": (chat(SYS, {"role": "robot", "content": "beep"}, BOT),),
    "E016": (
        chat(SYS, {"role": "user", "content": ""}, BOT),
        chat(SYS, {"role": "user", "content": 5}, BOT),
        chat(SYS, {"role": "user", "content": None}, BOT),
    ),
    "E017": (chat(SYS, USER),),
    "E018": (
        chat(SYS, USER, {**BOT, "weight": 2}),
        chat(SYS, {**USER, "weight": 1}, BOT),
        chat(SYS, USER, {**BOT, "weight": True}),
    ),
    "E019": (
        chat(SYS, {"role": "user", "content": [{"type": "audio"}]}, BOT),
        chat(
            SYS,
            USER,
            {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
        ),
    ),
    "E020": (
        chat(
            SYS,
            USER,
            {
                "role": "assistant",
                "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
        ),
        chat(
            SYS,
            USER,
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{bad"}}
                ],
            },
        ),
    ),
    "E021": (chat(SYS, USER, BOT, tools=[{"type": "function"}]),),
    "E022": (
        chat(
            SYS,
            USER,
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "content": "42"},
            BOT,
        ),
    ),
    "W101": (chat(USER, BOT),),
    "W102": (chat(SYS, BOT),),
    "W105": (chat(SYS, USER, BOT, source="crm"),),
    "W106": (
        chat(
            SYS,
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                ],
            },
            BOT,
        ),
    ),
    "P201": (chat(SYS, {"role": "user", "content": "mail me at jane.doe@example.com"}, BOT),),
    "P202": (chat(SYS, {"role": "user", "content": "call +44 20 7946 0958 today"}, BOT),),
    "P203": (chat(SYS, {"role": "user", "content": "card 4111 1111 1111 1111 please"}, BOT),),
    "P204": (chat(SYS, {"role": "user", "content": "IBAN GB82 WEST 1234 5698 7654 32"}, BOT),),
}


def run(tmp_path: Path, lines: list[str] | bytes, **options: object) -> object:
    path = tmp_path / "data.jsonl"
    path.write_bytes(lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode())
    return validate_dataset(path, jobs=1, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "line"), [(c, line) for c, lines in CASES.items() for line in lines]
)
def test_each_code_is_reported_at_its_line(tmp_path: Path, code: str, line: str) -> None:
    good = chat(SYS, USER, BOT)
    report = run(tmp_path, [good, line, good])
    at_line_two = {f.code for f in report.findings if f.line == 2}
    assert code in at_line_two, f"expected {code} on line 2, got {at_line_two}"
    assert report.valid is (CODES[code].severity == "warning")
    assert not any(f.line in (1, 3) and f.code != "W104" for f in report.findings)


def test_every_code_has_a_case() -> None:
    tested = set(CASES) | {
        "E001",
        "E004",
        "E005",
        "E030",
        "W103",
        "W104",
    }  # these have tests of their own below
    assert tested == set(CODES)


def test_invalid_utf8_and_too_long_lines(tmp_path: Path) -> None:
    good = chat(SYS, USER, BOT).encode()
    raw = good + b"\n" + b'{"messages": "\xff\xfe"}\n' + b"x" * 5000 + b"\n" + good + b"\n"
    path = tmp_path / "data.jsonl"
    path.write_bytes(raw)
    report = validate_file(path, ValidationOptions(jobs=1, max_line_bytes=1000))
    codes = {(f.line, f.code) for f in report.findings}
    assert (2, "E001") in codes
    assert (3, "E004") in codes
    assert report.examples == 2 and report.lines == 4
    assert report.size_bytes == len(raw)


def test_context_limit_duplicates_and_bom(tmp_path: Path) -> None:
    long_bot = {"role": "assistant", "content": "word " * 300}
    lines = ["\ufeff" + chat(SYS, USER, BOT), chat(SYS, USER, long_bot), chat(SYS, USER, BOT)]
    report = run(tmp_path, lines, context_limit=100)
    assert [(f.line, f.code) for f in report.findings] == [(2, "W103"), (3, "W104")]
    assert report.findings[1].detail == "same as line 1" or report.findings[1].detail.startswith(
        "same as line"
    )
    assert report.examples_over_limit == 1
    assert report.billable_tokens == report.tokens_per_example.min * 2 + 100


def test_offline_token_counts_match_the_cookbook(toy_dataset: Path) -> None:
    report = validate_dataset(toy_dataset, model="gpt-4", context_limit=4096, jobs=1)
    assert report.encoding == "cl100k_base" and report.tokens_exact
    assert report.tokens_per_example.max == 8032
    assert report.assistant_tokens_per_example.max == 8000
    assert report.examples_over_limit == 1
    assert report.missing_system == 1 and report.missing_user == 1
    assert report.billable_tokens == 4306


def test_model_picks_encoding_and_the_provider_the_limit(
    toy_dataset: Path, registry: Registry
) -> None:
    modern = validate_dataset(
        toy_dataset,
        model="gpt-4o-mini-2024-07-18",
        provider="fake_hosted",
        registry=registry,
        jobs=1,
    )
    assert modern.encoding == "o200k_base" and modern.tokens_exact
    assert modern.context_limit == 8192 and modern.examples_over_limit == 0
    assert modern.context_limit_source == "fake_hosted training context"
    unknown = validate_dataset(toy_dataset, model="Qwen/Qwen2.5-0.5B", jobs=1)
    assert unknown.encoding == "cl100k_base" and not unknown.tokens_exact
    assert unknown.context_limit == 4096


def test_provider_default_epochs_rule_gives_the_cost(toy_dataset: Path, registry) -> None:  # type: ignore[no-untyped-def]
    report = validate_dataset(
        toy_dataset, model="gpt-4", context_limit=4096, provider="fake", registry=registry, jobs=1
    )
    assert report.training is not None
    assert report.training.epochs == 20  # 5 examples: min(25, 100 // 5)
    assert report.training.trained_tokens == 4306 * 20
    assert report.training.amount == pytest.approx(4306 * 20 * 2.0 / 1e6)
    fixed = validate_dataset(
        toy_dataset,
        model="gpt-4",
        context_limit=4096,
        provider="fake",
        epochs=2,
        registry=registry,
        jobs=1,
    )
    assert fixed.training.epochs == 2 and fixed.training.epochs_source == "spec"


def test_preference_format(tmp_path: Path) -> None:
    good = json.dumps(
        {
            "input": {"messages": [USER]},
            "preferred_output": [BOT],
            "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
        }
    )
    bad = json.dumps(
        {
            "input": {"messages": [USER]},
            "preferred_output": [BOT, BOT],
            "non_preferred_output": [BOT],
        }
    )
    report = run(tmp_path, [good, bad], data_format="preference")
    assert [(f.line, f.code) for f in report.findings] == [(2, "E030")]
    assert report.examples == 1


def test_parallel_validation_gives_the_same_report(tmp_path: Path) -> None:
    lines = [
        chat(SYS, {"role": "user", "content": f"question {i} " * (i % 7 + 1)}, BOT)
        for i in range(3000)
    ]
    lines[100] = "{broken"
    lines[2000] = lines[5]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    serial = validate_file(path, ValidationOptions(jobs=1))
    parallel = validate_file(path, ValidationOptions(jobs=2))
    assert serial.model_dump(exclude={"elapsed_seconds"}) == parallel.model_dump(
        exclude={"elapsed_seconds"}
    )
    assert serial.counts == {"E002": 1, "W104": 1}


def test_findings_are_capped_but_counted(tmp_path: Path) -> None:
    report = run(tmp_path, ["[]"] * 50, max_per_code=10)
    assert report.counts["E010"] == 50
    assert len(report.findings) == 10 and report.findings_omitted == 40
    assert report.errors == 50


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"\x00\x00binary", "binary file"), (gzip.compress(b"{}\n"), "gzip-compressed")],
)
def test_files_that_are_not_jsonl_text(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=fragment):
        validate_dataset(path)
    with pytest.raises(InputFileError, match="no such file"):
        validate_dataset(tmp_path / "missing.jsonl")


def test_code_piped_to_python_validates_in_one_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(chat(SYS, USER, BOT) for _ in range(50)) + "\n")
    script = (
        "from tunefleet.data.validate import validate_file, ValidationOptions\n"
        f"report = validate_file({str(path)!r}, ValidationOptions(jobs=2))\n"
        "print(report.examples, report.counts['W104'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["50", "49"]


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail (instead of hanging the suite) if a call blocks for more than 20 seconds."""

    def stop(signum: int, frame: object) -> None:
        raise TimeoutError("blocked for 20 seconds")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 20)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"", "the file is empty (0 bytes)"),
        (b"\n", "only 1 blank line(s)"),
        (b"  \n\t\n\r\n", "only 3 blank line(s)"),
        (b"\xef\xbb\xbf\n", "only 1 blank line(s)"),
    ],
)
def test_a_file_without_examples_is_an_error(tmp_path: Path, content: bytes, detail: str) -> None:
    report = run(tmp_path, content)
    assert not report.valid
    assert report.counts["E005"] == 1 and report.examples == 0
    first = report.findings[0]
    assert (first.code, first.line, first.name) == ("E005", 0, "no_examples")
    assert detail in first.detail


def test_a_file_with_one_example_among_blank_lines_is_not_empty(tmp_path: Path) -> None:
    report = run(tmp_path, b"\n" + chat(SYS, USER, BOT).encode() + b"\n")
    assert "E005" not in report.counts and report.counts["E003"] == 1


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    os.mkfifo(path)
    return path


def _loop(tmp_path: Path) -> Path:
    (tmp_path / "a.jsonl").symlink_to(tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").symlink_to(tmp_path / "a.jsonl")
    return tmp_path / "a.jsonl"


def _socket(tmp_path: Path) -> Path:
    path = tmp_path / "s.jsonl"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()
    return path


@pytest.mark.usefixtures("no_hang")
@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_fifo, "is a FIFO (named pipe), not a JSONL file"),
        (lambda tmp: Path("/dev/zero"), "is a character device, not a JSONL file"),
        (lambda tmp: Path("/dev/null"), "is a character device, not a JSONL file"),
        (lambda tmp: tmp, "is a directory, not a JSONL file"),
        (_socket, "is a socket, not a JSONL file"),
        (_loop, "too many levels of symbolic links"),
        (lambda tmp: tmp / "missing.jsonl", "no such file"),
        (lambda tmp: tmp / "x.jsonl" / "y.jsonl", "no such file"),
        (lambda tmp: Path(str(tmp / "nul") + "\x00.jsonl"), "NUL byte"),
    ],
)
def test_only_regular_files_are_read(tmp_path: Path, make, problem: str) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path)
    with pytest.raises(InputFileError) as caught:
        validate_dataset(path, jobs=1)
    assert problem in str(caught.value)
    assert str(caught.value).startswith(str(path).replace("\x00", "\\x00"))


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = tmp_path / "data.jsonl"
    path.write_text(chat(SYS, USER, BOT) + "\n")
    path.chmod(0)
    with pytest.raises(InputFileError, match="permission denied"):
        validate_dataset(path, jobs=1)


def test_reports_are_reused_only_inside_the_block_and_while_the_file_is_unchanged(
    tmp_path: Path,
) -> None:
    from tunefleet.data import reuse_reports

    path = tmp_path / "data.jsonl"
    path.write_text(chat(SYS, USER, BOT) + "\n")
    with reuse_reports():
        first = validate_dataset(path, jobs=1)
        assert validate_dataset(path, jobs=1) is first
        assert validate_dataset(path, jobs=1, max_per_code=5) is not first
        path.write_text(chat(SYS, USER, BOT) + "\n" + chat(USER, BOT) + "\n")
        changed = validate_dataset(path, jobs=1)
        assert changed is not first and changed.examples == 2
    assert validate_dataset(path, jobs=1) is not changed


def test_the_pii_digit_prefilter_skips_no_digit_that_re_sees() -> None:
    """find_pii skips text in which the `regex` module's \\d finds no digit; that is exact
    only while it matches every character that re's \\d (which the patterns use) matches."""
    import re
    import sys

    from tunefleet.data.pii import any_digit_pattern

    everything = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    assert set(re.findall(r"\d", everything)) <= set(any_digit_pattern().findall(everything))


def test_the_quick_digit_test_never_misses_a_digit() -> None:
    """Each ASCII digit alone, at either end or inside ASCII text, and any script's digit
    in other text, is seen; text without one is not."""
    from tunefleet.data.pii import _has_digit

    for digit in "0123456789":
        assert all(_has_digit(t) for t in (digit, f"a{digit}", f"{digit}a", f"ab {digit} cd"))
    assert _has_digit("\u0966 Devanagari zero") and _has_digit("\u00e9t\u00e9 2024")
    assert not _has_digit("no digits at all") and not _has_digit("\u00e9t\u00e9, \u4f60\u597d")


@pytest.mark.parametrize(
    "text",
    [
        "card \u0664\u0661\u0661\u0661 \u0661\u0661\u0661\u0661 \u0661\u0661\u0661\u0661 \u0661\u0661\u0661\u0661",  # Arabic-Indic digits: \d, but not ASCII
        "call \uff10\uff12\uff10 \uff17\uff19\uff14\uff16 \uff10\uff19\uff15\uff18",  # fullwidth digits
        "IBAN GB82 WEST 1234 5698 7654 32 and mail a.b@example.org",
        "no digits, no mail: \U0001d7ce is a mathematical digit zero",
        "plain ASCII: call +44 20 7946 0958 or pay with 4111 1111 1111 1111",  # ASCII fast path
        "plain ASCII, nothing to find here",
    ],
)
def test_pii_findings_are_those_of_the_unfiltered_patterns(text: str) -> None:
    """The prefilters (`@`, any digit) only skip texts the patterns cannot match."""
    from tunefleet.data import pii

    message = {"role": "user", "content": text}
    found = pii.find_pii({"messages": [SYS, message]}, 7)
    expected = []
    if pii._EMAIL.search(text):
        expected.append("P201")
    expected += [f.code for f in pii._numbers(text, 1, 7)]
    assert [f.code for f in found] == expected
    assert all(f.line == 7 and f.detail.startswith("messages[1]") for f in found)


@pytest.mark.parametrize(
    "other",
    [
        {"role": "user", "content": "plain text, nothing to find"},
        {"role": "user", "content": [{"type": "text", "text": "a part"}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "user"},
        "a message that is no object",
        ["nor", "a list"],
    ],
)
def test_pii_is_found_and_named_whatever_the_other_messages_hold(other: object) -> None:
    """An example is first tested whole (all its texts joined); a message the join cannot
    take sends it through the per-message checks, which still find and name every one."""
    from tunefleet.data import pii

    mail = {"role": "assistant", "content": "write to a.b@example.org"}
    phone = {
        "role": "user",
        "content": "\u0966\u0967\u0968 \u0969\u096a\u096b \u096c\u096d\u096e\u096f",
    }
    found = pii.find_pii({"messages": [SYS, other, mail, phone]}, 3)
    assert [(f.code, f.detail.split()[0]) for f in found] == [
        ("P201", "messages[2]"),
        ("P202", "messages[3]"),
    ]
    assert pii.find_pii({"messages": [SYS, other]}, 3) == []


def _validated(tmp_path: Path, lines: list[str]) -> DatasetReport:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return validate_dataset(path, jobs=1)


def test_the_fast_path_counts_what_the_full_checks_count(tmp_path: Path) -> None:
    """Plain {role, content} messages take a fast path; the same messages made to take the
    full checks (an extra `weight`, content as one text part) count the same tokens."""
    plain = [
        SYS,
        {"role": "user", "content": "Wie spät ist es? 🙂"},
        {"role": "assistant", "content": "Il est midi."},
    ]
    slow = [
        {"role": "system", "content": [{"type": "text", "text": "Be kind."}]},
        {"role": "user", "content": [{"type": "text", "text": "Wie spät ist es? 🙂"}]},
        {"role": "assistant", "content": "Il est midi.", "weight": 1},
    ]
    fast_report = _validated(tmp_path, [json.dumps({"messages": plain})] * 2)
    slow_report = _validated(tmp_path, [json.dumps({"messages": slow})] * 2)
    assert fast_report.total_tokens == slow_report.total_tokens > 0
    assert fast_report.tokens_per_example == slow_report.tokens_per_example
    assert fast_report.assistant_tokens_per_example == slow_report.assistant_tokens_per_example
    assert fast_report.counts == slow_report.counts == {"W104": 1}


@pytest.mark.parametrize("role", [["user"], {"r": 1}, 5, None])
def test_a_role_that_is_not_a_string_is_an_unrecognized_role(tmp_path: Path, role: object) -> None:
    report = _validated(tmp_path, [chat(SYS, {"role": role, "content": "hi"}, BOT)])
    assert report.counts == {"E015": 1}


def test_workers_reading_the_file_themselves_agree_with_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In parallel, workers read their blocks from the file; tiny reads put line ends,
    over-long lines, blank lines and a last line without a newline across read boundaries."""
    from tunefleet.data import validate

    monkeypatch.setattr(validate, "BATCH_BYTES", 37)
    lines = [chat(SYS, {"role": "user", "content": f"q{i} " * (i % 5 + 1)}, BOT) for i in range(60)]
    lines[3] = "x" * 500  # over the limit below, spans several reads
    lines[10] = ""
    lines[20] = lines[4]
    lines[30] = "{broken"
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())  # BOM, no final newline
    serial = validate_file(path, ValidationOptions(jobs=1, max_line_bytes=300))
    parallel = validate_file(path, ValidationOptions(jobs=2, max_line_bytes=300))
    assert serial.model_dump(exclude={"elapsed_seconds"}) == parallel.model_dump(
        exclude={"elapsed_seconds"}
    )
    assert serial.counts == {"E002": 1, "E003": 1, "E004": 1, "W104": 1}
    assert serial.lines == 60


def test_a_file_that_changes_while_workers_read_it_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(chat(SYS, USER, BOT) for _ in range(50)) + "\n")

    def append(done: int, total: int) -> None:
        with path.open("a") as handle:
            handle.write(chat(SYS, USER, BOT) + "\n")

    with pytest.raises(InputFileError, match="changed while it was being validated"):
        validate_file(path, ValidationOptions(jobs=2), append)


def _same_report(path: str | Path, reference: Path) -> None:
    serial = validate_file(reference, ValidationOptions(jobs=1))
    parallel = validate_file(path, ValidationOptions(jobs=2))
    assert serial.model_dump(exclude={"elapsed_seconds", "path"}) == parallel.model_dump(
        exclude={"elapsed_seconds", "path"}
    )
    assert parallel.examples == 40


def test_workers_find_the_file_through_a_symlink_and_dot_dot(tmp_path: Path) -> None:
    """`link/../data.jsonl` is the file beside the link's target, not beside the link: the
    file system resolves it, and workers must open the same file as the main process."""
    inner = tmp_path / "sub" / "inner"
    inner.mkdir(parents=True)
    data = tmp_path / "sub" / "data.jsonl"
    data.write_text("\n".join(chat(SYS, USER, BOT) for _ in range(40)) + "\n")
    (tmp_path / "link").symlink_to(inner)
    (tmp_path / "data.jsonl").write_text("[]\n")  # what resolving `..` by text would find
    _same_report(tmp_path / "link" / ".." / "data.jsonl", data)


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="no /dev/fd on this system")
def test_workers_read_a_file_named_by_a_descriptor(tmp_path: Path) -> None:
    """`/dev/fd/N` names this process's descriptor N; in a worker it would name another."""
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(chat(SYS, USER, BOT) for _ in range(40)) + "\n")
    fd = os.open(data, os.O_RDONLY)
    try:
        _same_report(f"/dev/fd/{fd}", data)
    finally:
        os.close(fd)


def test_a_fifo_in_the_files_place_is_refused_by_workers_not_waited_on(tmp_path: Path) -> None:
    """A worker opening its source never blocks: a FIFO (opened for reading, it would wait
    for a writer forever) put where the file was is refused as a replacement."""
    import threading

    from tunefleet.data._worker import Source, open_source

    data = tmp_path / "data.jsonl"
    data.write_text(chat(SYS, USER, BOT) + "\n")
    identity = os.stat(data)
    data.unlink()
    os.mkfifo(data)
    outcome: list[tuple[int | None, str | None]] = []
    opener = threading.Thread(
        target=lambda: outcome.append(
            open_source(Source((str(data),), identity.st_dev, identity.st_ino))
        ),
        daemon=True,  # a regression hangs in open(); it must not keep pytest from exiting
    )
    opener.start()
    opener.join(timeout=10)
    assert outcome == [(None, "was replaced while it was being validated")]
