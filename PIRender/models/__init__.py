"""The PIRender FaceGenerator (mapping, warping and editing networks)."""
from PIRender.models.face_generator import (  # noqa: F401
    EditingNet,
    FaceGenerator,
    GeneratorConfig,
    MappingNet,
    WarpingNet,
    build_generator,
)
