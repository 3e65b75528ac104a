"""Shared pytest setup: keep TensorFlow's C++ logging quiet (set before TF is imported)."""
import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
