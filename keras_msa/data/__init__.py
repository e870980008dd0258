"""Data: batch contract, synthetic benchmark, readers, TFRecord I/O."""
