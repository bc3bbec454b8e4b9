"""The portable trainer (issue 4, in progress).

:mod:`tunefleet.trainer.metrics` is the line format the trainer prints and every
provider's event stream parses; it imports nothing heavy, so providers can use it
without the ``tunefleet[train]`` extra.
"""
