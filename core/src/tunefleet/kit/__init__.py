"""The provider kit: what backends share, so a backend is mostly its own requests and its
own error translation.

Public API for providers (with :mod:`tunefleet.provider`, :mod:`tunefleet.errors`,
:mod:`tunefleet.events` and :mod:`tunefleet.spec`); nothing here imports a cloud SDK, the
engine or the journal.

==========================  ============================================================
module                      what it holds
==========================  ============================================================
:mod:`.trainer`             the trainer's config from a spec, the spec knobs the trainer
                            cannot take, the trainer's lines as normalized events
:mod:`.cost`                hourly cost (instance-hours from tokens and an assumed
                            throughput, dated price tables, spot discount) and per-token
                            cost (with a service's default-epochs rule); actual-cost events
:mod:`.labels`              the run-key labels every job carries, so ``find`` can see it
:mod:`.limits`              concurrent-job limits and the storage-region check
:mod:`.chat`                OpenAI-compatible chat requests and replies
:mod:`.gemini`              chat examples as Vertex AI Gemini tuning lines (a whole file,
                            atomically), and a tuned Gemini model's request and reply
:mod:`.files`               atomic JSON files and file locks, for providers that keep state
                            on disk
:mod:`.processes`           whether a process (by pid and start time) is still alive
:mod:`.retry`               tenacity waits that honour a service's Retry-After
==========================  ============================================================
"""
