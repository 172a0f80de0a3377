"""Training for the embedded model's tower and projector (GPU; the LLM stays frozen)."""
