"""Training the default codec (extra `[train]`: torch CPU): data, model, training loop and package export."""
