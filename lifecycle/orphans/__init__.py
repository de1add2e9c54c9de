"""Orphan cleanup: delete files under a table's location that nothing references, guarded by age, live
writers, in-flight compactions and the purge journal (`lifecycle-cli run clean-orphans`)."""
