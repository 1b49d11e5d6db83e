"""Recipe files (<model>.toml) for the model zoo; read by ocrgraft.converter.recipes."""
