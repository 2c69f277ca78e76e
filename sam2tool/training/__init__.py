"""Training: the SAM 2 loss, and (next) the training step, LightningModule and Trainer setup."""
