"""`archiver prune`: opt-in retention (README: Retention).

`rules` decides which versions of one subject may go (pure, no I/O); `thinning` and
`raw_answers` apply it to the database in bounded batches; `command` is the CLI.
"""
