"""Preference data: datasets and pairs in the store (texts or conversations), import (streamed,
with a report of bad rows) and export, browsing and search, edits with undo and review verdicts,
incremental checks, the exact model text of a pair, derived datasets (split, noise, dedupe,
filter, sample), transcripts turned into minimal pairs, statistics, and the demo datasets a
fresh workspace starts with."""
