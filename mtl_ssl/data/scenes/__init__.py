"""Built-in "scenes" detection data: Fashion-MNIST items pasted on real photos (see generator)."""
