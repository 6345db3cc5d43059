"""The public Gradio demo (app, engine, config, votes) and its export to a Hugging Face Space.

Only this package imports gradio, and only in `app.py`: importing `dpo_core.demo` (or its CLI)
never loads gradio.
"""
