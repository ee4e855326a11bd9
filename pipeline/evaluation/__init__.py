"""Inference and evaluation shared by validation during training and the evaluate stage."""
