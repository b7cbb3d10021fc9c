"""Storage: schema, migrations, the group-commit writer, queries, retention."""
