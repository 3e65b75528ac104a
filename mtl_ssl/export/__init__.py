"""SavedModel export (exporter_lib) and inference on image files with an export (inference)."""
