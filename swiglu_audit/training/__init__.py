"""The training core: data, models, training, the checkpoint cache, devices, progress."""
