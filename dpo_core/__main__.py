"""`python -m dpo_core <verb>`."""

from .cli import main

raise SystemExit(main())
