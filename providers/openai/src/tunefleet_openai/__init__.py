"""tunefleet's OpenAI provider: fine-tuning jobs through the official SDK."""
