"""Preference data: datasets and pairs in the store, import and export, browsing, edits with
undo, checks, derived datasets (split, noise, dedupe, filter, sample), transcripts turned into
minimal pairs, statistics, and the demo datasets a fresh workspace starts with."""
