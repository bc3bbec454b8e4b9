"""The portable trainer: the workload every open-weight target runs.

``python -m tunefleet_trainer --config trainer.json`` fine-tunes as a
:class:`~tunefleet_trainer.config.TrainerConfig` says and prints one parseable line per
logging step and per checkpoint (:mod:`tunefleet_trainer.metrics`). The same entry point
runs in the local provider's subprocess and in the ``deploy/trainer`` image on SageMaker,
HyperPod, Azure ML and Vertex AI.

It is a distribution of its own, ``tunefleet-trainer``, with no orchestration dependency:
its image installs the training stack and nothing of tunefleet's journal, CLI or
tokenizers. Modules: ``config`` and ``metrics`` (the contract tunefleet's core and its
providers share with the trainer; pydantic and the standard library only), ``chat``
(datasets and the loss mask), ``models`` (base models, offline; ``scratch:`` presets),
``train`` (the run), ``inference`` (loading a trained model and answering chat
requests), ``predictions`` (the golden set's questions and the answers' file format, also
shared with core) and ``answer`` (``python -m tunefleet_trainer.answer``: a batch of chat
requests answered without an endpoint). The training stack (torch, transformers, peft, TRL) is the ``train`` extra.
"""
