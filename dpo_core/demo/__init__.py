"""The public Gradio demo (a Hugging Face Space): baseline and fine-tuned side by side, votes.

This package is copied as it is into exported Space folders (`publish/space_export.py`), so it
imports nothing from the rest of `dpo_core`: only the standard library, torch, transformers,
peft and (in `app.py` alone) gradio. Its prompt rendering and sampling are a deliberate copy of
the lab's, held equal by a parity test.
"""
