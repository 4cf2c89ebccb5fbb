"""model-sync: validate training outputs, copy them to immutable versioned keys, promote them."""
