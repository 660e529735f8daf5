"""The one training loop every torch family uses; importing this package does not import torch."""
