"""The builds app's pages: `builds` (the list, one build live, Rebuild / Cancel / Retry),
`test_runs` (a version's test matrix, a check's log, Re-run / Cancel) and `janitor`."""
