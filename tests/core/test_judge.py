"""The LLM judge: both orders asked, verdicts parsed strictly, MT-Bench's combination rule,
and a win rate whose interval means what it says. The judges here are deterministic
functions that record what they were asked."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tunefleet.evaluation.judge import (
    JUDGE_MAX_TOKENS,
    JUDGE_SYSTEM_PROMPT,
    JudgedPair,
    Verdict,
    combine,
    judge_pairs,
    judge_request,
    parse_verdict,
    render_messages,
    wilson_interval,
    win_rate,
)
from tunefleet.provider import ChatReply, ChatRequest

BLOCK = re.compile(r"<(question|reference_answer|answer_a|answer_b)>\n(.*?)\n</\1>", re.S)


def blocks(request: ChatRequest) -> dict[str, str]:
    """The tagged blocks of a judge request's user message."""
    return dict(BLOCK.findall(request.messages[-1]["content"]))


class RecordingJudge:
    """A judge that answers each request with ``decide(blocks)`` and records every batch."""

    def __init__(self, decide: Callable[[dict[str, str]], str]) -> None:
        self.decide = decide
        self.batches: list[list[ChatRequest]] = []

    def __call__(self, requests: Sequence[ChatRequest]) -> list[ChatReply]:
        self.batches.append(list(requests))
        return [ChatReply(text=self.decide(blocks(r))) for r in requests]

    @property
    def requests(self) -> list[ChatRequest]:
        return [r for batch in self.batches for r in batch]


def prefers_the_reference(parts: dict[str, str]) -> str:
    """A fair judge: the answer equal to the reference wins; neither or both, a tie."""
    a = parts["answer_a"] == parts["reference_answer"]
    b = parts["answer_b"] == parts["reference_answer"]
    return "A" if a and not b else "B" if b and not a else "TIE"


def questions(n: int) -> list[list[dict[str, Any]]]:
    return [[{"role": "user", "content": f"question {i}?"}] for i in range(n)]


# --- Verdicts and their combination -------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("A", "A"),
        ("b", "B"),
        ("TIE", "TIE"),
        ("tie", "TIE"),
        ("  A  \nBecause answer A cites the refund policy.", "A"),
        ("\n\n  B\n", "B"),
        ("A.", "invalid"),
        ("**A**", "invalid"),
        ("Answer A", "invalid"),
        ("AB", "invalid"),
        ("I think A is better\nA", "invalid"),
        ("", "invalid"),
        ("\n  \n", "invalid"),
    ],
)
def test_parse_verdict_is_strict(reply: str, verdict: Verdict) -> None:
    assert parse_verdict(reply) == verdict


VERDICTS: list[Verdict] = ["A", "B", "TIE", "invalid"]


@pytest.mark.parametrize(("new_as_a", "new_as_b"), list(itertools.product(VERDICTS, repeat=2)))
def test_a_win_or_loss_needs_both_orders_to_agree(new_as_a: Verdict, new_as_b: Verdict) -> None:
    want = {("A", "B"): "win", ("B", "A"): "loss"}.get((new_as_a, new_as_b), "tie")
    assert combine(new_as_a, new_as_b) == want


# --- Judging in both orders ---------------------------------------------------------------


def test_pure_position_bias_gives_all_ties() -> None:
    judge = RecordingJudge(lambda parts: "A")
    pairs = judge_pairs(questions(7), ["r"] * 7, ["new"] * 7, ["old"] * 7, judge)
    record = win_rate(pairs)
    assert (record.wins, record.losses, record.ties, record.invalid, record.n) == (0, 0, 7, 0, 7)
    assert record.win_rate == 0.5


def test_each_example_is_asked_in_both_orders() -> None:
    judge = RecordingJudge(lambda parts: "B")
    judge_pairs(
        questions(3), ["ref 0", "ref 1", "ref 2"], ["n0", "n1", "n2"], ["o0", "o1", "o2"], judge
    )
    asked = [
        (p["question"], p["reference_answer"], p["answer_a"], p["answer_b"])
        for p in map(blocks, judge.requests)
    ]
    assert asked == [
        ("question 0?", "ref 0", "n0", "o0"),
        ("question 0?", "ref 0", "o0", "n0"),
        ("question 1?", "ref 1", "n1", "o1"),
        ("question 1?", "ref 1", "o1", "n1"),
        ("question 2?", "ref 2", "n2", "o2"),
        ("question 2?", "ref 2", "o2", "n2"),
    ]


def test_a_fair_judge_gives_exact_counts() -> None:
    references = ["4", "Paris", "blue", "7", "yes"]
    new = ["4", "Paris", "blue", "8", "no"]  # right, right, right, wrong, wrong
    old = ["5", "Lyon", "blue", "7", "maybe"]  # wrong, wrong, right, right, wrong
    judge = RecordingJudge(prefers_the_reference)
    pairs = judge_pairs(questions(5), references, new, old, judge)
    assert [pair.outcome for pair in pairs] == ["win", "win", "tie", "loss", "tie"]
    record = win_rate(pairs)
    assert (record.wins, record.losses, record.ties, record.invalid) == (2, 1, 2, 0)
    assert record.win_rate == pytest.approx((2 + 2 / 2) / 5)
    assert record.ci_low < record.win_rate < record.ci_high


def test_invalid_verdicts_are_ties_and_counted() -> None:
    judge = RecordingJudge(lambda parts: "Both answers are fine.")
    record = win_rate(judge_pairs(questions(4), ["r"] * 4, ["n"] * 4, ["o"] * 4, judge))
    assert (record.ties, record.invalid, record.win_rate) == (4, 8, 0.5)
    # One order unreadable, the other for the new model: still only a tie.
    one_sided = win_rate([JudgedPair(new_as_a="A", new_as_b="invalid")])
    assert (one_sided.wins, one_sided.ties, one_sided.invalid) == (0, 1, 1)


def test_requests_are_greedy_short_and_complete() -> None:
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "You are Acme's support agent."},
        {"role": "user", "content": [{"type": "text", "text": "Where is my order?"}]},
    ]
    request = judge_request(conversation, "It ships Monday.", "Monday.", "No idea.")
    assert request.temperature == 0
    assert request.max_tokens == JUDGE_MAX_TOKENS <= 32
    assert request.messages[0] == {"role": "system", "content": JUDGE_SYSTEM_PROMPT}
    assert "A, B or TIE" in request.messages[1]["content"]
    assert blocks(request) == {
        "question": "[system]\nYou are Acme's support agent.\n\n[user]\nWhere is my order?",
        "reference_answer": "It ships Monday.",
        "answer_a": "Monday.",
        "answer_b": "No idea.",
    }


def test_render_messages() -> None:
    assert render_messages([{"role": "user", "content": "Hi?"}]) == "Hi?"
    tool_call: list[dict[str, Any]] = [
        {"role": "user", "content": None},
        {"role": "assistant", "content": {"x": 1}},
    ]
    assert render_messages(tool_call) == '[user]\nnull\n\n[assistant]\n{"x": 1}'


def test_batches_and_progress() -> None:
    judge = RecordingJudge(lambda parts: "TIE")
    seen: list[tuple[str, int, int]] = []
    judge_pairs(
        questions(5),
        ["r"] * 5,
        ["n"] * 5,
        ["o"] * 5,
        judge,
        batch_examples=2,
        progress=lambda task, done, total: seen.append((task, done, total)),
    )
    assert [len(batch) for batch in judge.batches] == [4, 4, 2]
    assert seen == [("judge", 0, 5), ("judge", 2, 5), ("judge", 4, 5), ("judge", 5, 5)]


def test_a_judge_that_drops_replies_is_an_error() -> None:
    def short(requests: Sequence[ChatRequest]) -> list[ChatReply]:
        return [ChatReply(text="A")] * (len(requests) - 1)

    with pytest.raises(ValueError, match="returned 3 replies to 4 requests"):
        judge_pairs(questions(2), ["r"] * 2, ["n"] * 2, ["o"] * 2, short)


def test_mismatched_inputs_are_an_error() -> None:
    judge = RecordingJudge(lambda parts: "A")
    with pytest.raises(ValueError, match="as many"):
        judge_pairs(questions(2), ["r"], ["n"] * 2, ["o"] * 2, judge)


# --- The confidence interval --------------------------------------------------------------


@pytest.mark.parametrize(("wins", "n"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (57, 200)])
def test_wilson_interval_without_ties_is_scipys(wins: int, n: int) -> None:
    from scipy.stats import binomtest

    want = binomtest(wins, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(wins, n)
    assert low == pytest.approx(want.low, abs=1e-12)
    assert high == pytest.approx(want.high, abs=1e-12)


def test_the_interval_never_collapses() -> None:
    all_ties = win_rate([JudgedPair(new_as_a="A", new_as_b="A")] * 20)
    assert all_ties.ci_low < 0.5 < all_ties.ci_high
    all_wins = win_rate([JudgedPair(new_as_a="A", new_as_b="B")] * 20)
    assert all_wins.ci_high == 1.0 and 0.8 < all_wins.ci_low < 1.0
    assert win_rate([JudgedPair(new_as_a="B", new_as_b="A")]).ci_high > 0.5


def coverage(n: int, p_win: float, p_tie: float) -> float:
    """The exact probability that the interval of ``n`` examples holds the true win rate,
    when each example is a win, tie or loss with these probabilities (trinomial)."""
    p_loss = 1 - p_win - p_tie
    truth = p_win + p_tie / 2
    total = 0.0
    for wins in range(n + 1):
        for ties in range(n - wins + 1):
            losses = n - wins - ties
            low, high = wilson_interval(wins + ties / 2, n)
            if low <= truth <= high:
                ways = math.comb(n, wins) * math.comb(n - wins, ties)
                total += ways * p_win**wins * p_tie**ties * p_loss**losses
    return total


def test_the_interval_covers_the_true_win_rate() -> None:
    grid = [
        (p_win, p_tie)
        for p_win in (0.05, 0.2, 0.35, 0.5, 0.65, 0.8)
        for p_tie in (0.0, 0.1, 0.3, 0.5)
        if p_win + p_tie <= 0.95
    ]
    covered = {(p_win, p_tie): coverage(50, p_win, p_tie) for p_win, p_tie in grid}
    with_ties = [c for (_, p_tie), c in covered.items() if p_tie > 0]
    without = [c for (_, p_tie), c in covered.items() if p_tie == 0]
    # Ties make Wilson's variance an overestimate: at least 95% wherever examples tie.
    assert min(with_ties) >= 0.95
    # Without ties it is Wilson's binomial interval, whose coverage oscillates around 95%.
    assert min(without) >= 0.93
    assert sum(covered.values()) / len(covered) >= 0.95


def test_wilson_interval_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="at least one"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="outside"):
        wilson_interval(3, 2)
    with pytest.raises(ValueError, match="at least one"):
        win_rate([])
