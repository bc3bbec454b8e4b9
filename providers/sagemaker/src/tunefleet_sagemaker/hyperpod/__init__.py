"""The ``hyperpod`` provider: tunefleet's trainer as jobs on a SageMaker HyperPod cluster."""
