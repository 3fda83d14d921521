"""WebVision-v1 file lists (same model and loop as imagenet/)."""
