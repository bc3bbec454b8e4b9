"""tunefleet-vertex: the Google Vertex AI provider."""
