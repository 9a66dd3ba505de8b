"""treasure: training-time markers for controllable, long-tail-aware language models."""
