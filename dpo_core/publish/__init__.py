"""Publishing a finished run: its model as a folder (LoRA merged or as is, with a model card,
optionally pushed to the hub), or a ready Gradio Space folder running `dpo_core/demo`."""
