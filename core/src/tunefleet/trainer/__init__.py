"""The portable trainer: the workload every open-weight target runs.

``python -m tunefleet.trainer --config trainer.json`` fine-tunes as a
:class:`~tunefleet.trainer.config.TrainerConfig` says and prints one parseable line per
logging step and per checkpoint (:mod:`tunefleet.trainer.metrics`). The same entry point
runs in the local provider's subprocess and in the ``deploy/trainer`` image on SageMaker,
HyperPod, Azure ML and Vertex AI.

Modules: ``config`` (the contract, and the launchers' environment), ``chat`` (datasets and
the loss mask), ``models`` (base models, offline; ``scratch:`` presets), ``train`` (the
run), ``inference`` (loading a trained model and answering chat requests), ``metrics``
(the line format). ``config`` and ``metrics`` import nothing heavy, so providers use them
without the ``tunefleet[train]`` extra (torch, transformers, peft, TRL).
"""
