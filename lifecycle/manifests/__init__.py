"""`rewrite-manifests`: consolidate the current snapshot's data manifests into few, partition-clustered ones."""
