"""Getting pruned models out: self-describing saved programs and other deployment formats."""
