"""The training recipe: typed config, LMDB training pairs, the FaceTrainer."""
