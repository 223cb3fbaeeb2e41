"""Comparison reports: the same rows as JSON (for tools), Markdown and CSV (for people)."""

from prunekit.report.table import COLUMNS, markdown_table, write_report

__all__ = ["COLUMNS", "markdown_table", "write_report"]
