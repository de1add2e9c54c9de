"""The beat schedule (filled in by the fleet): which job, which tables, when, to which queue."""
