"""`compact-schema-history`: drop unused schemas and partition specs, trim the metadata log and delete the
metadata files that leave it."""
