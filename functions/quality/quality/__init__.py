"""Live quality per city and version: joins late labels to captured predictions (docs/quality.md)."""
