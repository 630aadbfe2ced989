"""Storage: settings, database engines, tables, views and migrations."""
