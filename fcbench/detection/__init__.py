"""Object and face detection: the detector, motion gating on video, and the detect -> embed -> identify pipeline."""
