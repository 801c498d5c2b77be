"""Face analysis shared by the toolkit.

- :mod:`faces.types`: the ``Detector`` / ``Landmarker`` / ``IdentityEmbedder`` interfaces and ``FaceBox``;
- :mod:`faces.dlib_backend`: offline default (dlib HOG/CNN detector, 68-point predictor, ResNet embedder);
- :mod:`faces.insightface_backend`, :mod:`faces.fan_backend`: ArcFace and FAN (optional extras);
- :mod:`faces.analysis`: ``FaceAnalyzerConfig`` and ``build_face_analyzer``;
- :mod:`faces.align`: FFHQ-style alignment to 512×512, ``transform_points``, ``paste_back``;
- :mod:`faces.weights`: resolution of every pretrained file the toolkit uses.

Nothing is imported here: import the submodule you need.
"""
