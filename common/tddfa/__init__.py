"""3DDFA_V2 (cleardusk/3DDFA_V2) re-implemented: FaceBoxes detector, MobileNet 62-parameter
regressor, BFM keypoint bases, and the 68-point reconstruction.

Modules: ``pickles`` (restricted .pkl reader), ``geometry`` (roi box, crop, de-normalisation,
camera matrix -> angles, 68 points), ``bfm``, ``mobilenet``, ``faceboxes``, ``backend`` (the
``3ddfa_v2`` landmark backend of :mod:`common.faces`), ``specs`` (weights registry entries),
``smoke`` (smoke-test stand-ins in the released layouts). Nothing is imported here, so
``common.weights`` can read ``specs`` without loading torch models.
"""
