"""Rendering as pure functions and writers: annotated pictures, annotated video, AU timelines."""
