"""Iceberg access shared by every job: the catalog, light manifest and manifest-list readers, reachability
(and its persistent cache), data-file footers and partition strings."""
