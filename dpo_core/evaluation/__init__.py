"""Evaluation: does the tuned model prefer the chosen replies, on what, and what broke?

- `scoring.py`: log-probabilities of prompt + reply texts (the scoring convention), pair scores,
  implicit rewards, pair accuracy.
- `statistics.py`: bootstrap intervals and summaries.
- `suites.py`: BLiMP-layout suites, TRL pairs files, HellaSwag-style multiple choice.
- `judges.py` and `win_rate.py`: generation win rate judged by a lexicon, a reward model or an LLM.
- `evaluate.py`: evaluate a model spec on stored pairs, a suite or a file, and store the result.
- `results.py`: stored evaluations, comparison tables, flips.
- `job.py`: an evaluation of several models as a background job.
"""

# Scoring, like generation, runs torch's CPU kernels in the caller's thread: set libgomp's wait
# policy before torch loads it (dpo_core/chat/threads.py; 3.5x faster on a shared CPU).
from ..chat import threads as _threads  # noqa: E402, F401
