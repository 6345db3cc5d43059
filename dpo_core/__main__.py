"""`python -m dpo_core`."""

from .cli.main import main

raise SystemExit(main())
