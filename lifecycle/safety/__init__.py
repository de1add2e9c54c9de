"""The safety core: every rule that decides whether a commit landed or a file may be deleted, in one place.

- paths:   the one path identity (local forms normalised, object-store keys literal, containment, `..`)
- deletes: the one delete path (location checked first, `gc.enabled` honoured, missing counts as done)
- commit:  commit outcome classification (landed / conflict / unknown) and the retry policy
- landed:  "did this plan's commit land?" decided from the table's reachable files; the live set
- staged:  removing what a plan staged for a commit that did not land

Every job calls these; none keeps a copy. docs/resumability.md ("Safety rules") lists each rule with the
test that proves it.
"""
