"""How busy the machine's host was while a benchmark ran: CPU steal.

On a virtual machine, steal is the time a virtual CPU was ready to run but the hypervisor
ran something else (another guest). When this was written, the machine the figures in
docs/performance.md come from had lost about 1.5 % of its CPU time to it since boot, in
spells; a spell slows whichever run it falls in, and the ratios compare runs made seconds
apart. The benchmarks report the share stolen during their timed rounds, so that a figure
measured in such a spell can be told from a regression. Steal is not the only noise
there: identical runs have also differed by a third with almost no steal (other guests
share the host's caches and memory bandwidth, which no counter here shows), so a share
near zero rules out only this one cause.

Read from the first line of /proc/stat (Linux, all CPUs together, in clock ticks; see
proc(5): user nice system idle iowait irq softirq steal ...). Elsewhere nothing is known.
"""

from __future__ import annotations

from pathlib import Path

STAT = Path("/proc/stat")


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, all) clock ticks of every CPU since boot; None where /proc/stat is absent
    or has no steal column (kernels before 2.6.11)."""
    try:
        first = STAT.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if len(first) < 9 or first[0] != "cpu":
        return None
    # guest and guest_nice (columns 9 and 10) are already counted in user and nice.
    ticks = [int(value) for value in first[1:9]]
    return ticks[7], sum(ticks)


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of CPU time stolen between two :func:`cpu_ticks` readings, 0 to 1; None
    where either is unknown or no tick passed."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def percent(share: float | None) -> str:
    """``share`` as a percentage for a table, or "n/a"."""
    return "n/a" if share is None else f"{100 * share:.1f} %"
