"""bitmatch coordinator: jobs, dispatch, cross-matching, verdicts, dashboard and CLI."""
