"""Team annotation: accounts and roles, tasks, judgments, agreement and the consensus dataset."""
