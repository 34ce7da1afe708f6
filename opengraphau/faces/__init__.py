"""Faces: where they are in a frame (MTCNN) and how each is cut out for the model."""
