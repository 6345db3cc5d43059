"""DPO Lab: a library for Direct Preference Optimization of causal language models."""

__version__ = "0.1.0"

import warnings

# PEFT (0.21) asks transformers a deprecated question on every adapter load; the warning says
# nothing a DPO Lab user can act on and fills every eval, chat and worker log.
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated",
                        category=FutureWarning)
