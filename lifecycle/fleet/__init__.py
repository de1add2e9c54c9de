"""The fleet runtime around the jobs: message runs with heartbeats and capped attempts, the reaper, queue depths,
message signatures, the Redis bandwidth bucket and process priority. Called by workers/; never imports celery."""
