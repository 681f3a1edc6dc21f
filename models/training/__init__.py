"""Training (frozen, joint, pretrain), its config and defaults, and the trained model it returns."""
