"""Export to SavedModels that TensorFlow Serving loads."""
