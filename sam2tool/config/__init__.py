"""Settings: schema, loading from YAML/env/CLI, problems, commented YAML."""
