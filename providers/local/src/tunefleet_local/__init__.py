"""tunefleet-local: fine-tuning on this machine, tunefleet's embedded default provider."""
