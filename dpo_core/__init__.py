"""DPO Lab: a library for Direct Preference Optimization of causal language models."""

__version__ = "0.1.0"
