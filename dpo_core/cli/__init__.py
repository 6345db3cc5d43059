"""The command line, `python -m dpo_core <verb>`: `main.py` builds the parser from one module per
verb group (named after the verbs) and turns every DPOLabError into one line and exit code 2."""
