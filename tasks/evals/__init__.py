"""Evaluation of trained models: benchmark-format tasks, QA and generation metrics, security
probes, held-out perplexity per source. Plain functions over a model and its tokenizer; the
evaluate flow fans them out over checkpoints."""
