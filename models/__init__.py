"""The schema: tables, column types, views, engines and migrations."""
