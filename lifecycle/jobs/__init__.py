"""The job framework: requests, results, the context every job receives, and the registry."""
