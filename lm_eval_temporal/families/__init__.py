"""Model families: how to recognise a checkpoint, load it, denoise a batch with per-step
capture, and its official decoding defaults. One subpackage or module per family; the
pipeline, records, voting and metrics stay family-agnostic."""
