"""The dev stack (``jobhub dev``) and the demo job functions."""
