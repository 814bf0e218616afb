import numpy as np
import pytest
from PIL import Image
import skimage.data

from common import faces


@pytest.fixture(scope="module")
def backend():
    return faces.get_backend("dlib")


@pytest.fixture(scope="module")
def face256():
    img = Image.fromarray(skimage.data.astronaut()).resize((256, 256), Image.BICUBIC)
    return np.asarray(img)


def test_dlib_matches_golden_landmarks(backend, face256, golden):
    g = np.load(golden / "recon_align.npz")
    np.testing.assert_array_equal(g["frame_rgb"], face256)  # same input as the golden case
    box = backend.detect(face256)[0]
    lm = backend.landmarks(face256, box)
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    # golden: dlib frontal detector (upsample 1) + the same 68-point model, first face
    np.testing.assert_array_equal(lm, g["lm68_xy_ydown"])


def test_tracking_fallback_as_upstream(backend, face256):
    blank = np.zeros_like(face256)
    lm, found = faces.track_landmarks([blank, face256, blank, face256[None]], backend, return_found=True)
    assert found.tolist() == [False, True, False, True]
    boxes = backend.detect_batch(np.stack([blank, face256]))
    assert boxes[0] == [] and boxes[1][0] == backend.detect(face256)[0]
    assert (lm[0] == -1).all()                    # no face yet: -1 rows
    np.testing.assert_array_equal(lm[2], lm[1])   # no face: previous frame's landmarks


def test_detect_every_reuses_the_box(backend, face256):
    calls = []

    class Counting:
        name = "counting"

        def detect(self, f):
            calls.append(1)
            return backend.detect(f)

        def landmarks(self, f, b):
            return backend.landmarks(f, b)

    frames = np.stack([face256] * 7)
    lm = faces.track_landmarks([frames], Counting(), detect_every=3)
    assert len(calls) == 3  # frames 0, 3, 6
    np.testing.assert_array_equal(lm, faces.track_landmarks([frames], backend))


def test_mouth_opening_by_hand():
    lm = np.zeros((68, 2))
    lm[36], lm[45] = (0, 0), (10, 0)
    lm[62], lm[66] = (5, 5), (5, 8)
    assert faces.mouth_opening(lm)[0] == pytest.approx(0.3)


def test_unknown_backend_and_missing_fan():
    from common.io import UserError

    with pytest.raises(UserError, match="unknown landmark backend"):
        faces.get_backend("mtcnn")
    try:
        import face_alignment  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="pip install face-alignment"):
            faces.get_backend("fan")


def test_for_thread_shares_the_model_and_gives_the_same_landmarks(backend, face256):
    from concurrent.futures import ThreadPoolExecutor

    other = backend.for_thread()
    assert other._predictor is backend._predictor and other._detector is not backend._detector
    frames = [np.roll(face256, s, axis=1) for s in range(0, 24, 3)]
    serial = [backend.landmarks(f, backend.detect(f)[0]) for f in frames]
    workers = [backend.for_thread() for _ in range(2)]

    def job(i):
        b = workers[i % 2]
        return b.landmarks(frames[i], b.detect(frames[i])[0])

    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(job, range(len(frames))))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)


def test_face_tracker_follows_one_face_never_alternating():
    big, small = (0, 0, 100, 100), (150, 0, 210, 60)
    t = faces.FaceTracker()
    assert t.choose([]) is None and t.first is None
    assert t.choose([small, big]) == big and t.first == big  # the largest at the start
    # the other face becomes larger and comes first: still the same person (overlap)
    assert t.choose([(140, 0, 260, 120), (5, 3, 103, 101)]) == (5, 3, 103, 101)
    assert t.choose([(140, 0, 260, 120)]) is None  # only the other person in view: no face
    assert t.choose([(30, 10, 130, 110), (140, 0, 260, 120)]) == (30, 10, 130, 110)  # moved fast: by centre
    assert faces.iou(big, big) == 1.0 and faces.iou(big, (200, 200, 300, 300)) == 0.0
    assert faces.ranges(np.array([0, 1, 2, 5, 7, 8])) == "0-2,5,7-8" and faces.ranges(np.array([])) == ""
