"""Audio feature extraction (Kaldi-compatible MFCC and the 45-d ViCo features)."""
