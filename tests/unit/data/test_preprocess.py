import numpy as np
import pytest
import torch

from ops.data.preprocess import VJEPA2_MEAN, preprocess_frames, resize_and_crop, uniform_frame_indices


def test_uniform_indices_cover_the_clip_evenly():
    assert uniform_frame_indices(16, 4).tolist() == [2, 6, 10, 14]
    assert uniform_frame_indices(8, 8).tolist() == list(range(8))
    assert uniform_frame_indices(100, 1).tolist() == [50]
    with pytest.raises(ValueError, match="fewer than"):
        uniform_frame_indices(3, 8)


def test_resize_shorter_side_then_centre_crop():
    frames = np.zeros((2, 60, 120, 3), dtype=np.uint8)
    frames[:, :, 50:70] = 255  # a white vertical band in the centre
    out = resize_and_crop(frames, 32)
    assert out.shape == (2, 3, 32, 32)
    centre, edge = out[0, :, 16, 16], out[0, :, 16, 0]
    assert centre.min() > 0.9 and edge.max() < 0.1  # the centre survived the crop, the sides went


def test_normalisation_uses_vjepa2_statistics():
    grey = np.full((1, 8, 8, 3), 255, dtype=np.uint8)
    out = preprocess_frames(grey, 8)
    expected = (1.0 - torch.tensor(VJEPA2_MEAN)) / torch.tensor((0.229, 0.224, 0.225))
    torch.testing.assert_close(out[0, :, 0, 0], expected)


def test_uint8_frames_normalise_the_same_at_any_rank():
    from ops.data.preprocess import normalise, uint8_frames_to_input

    frames = torch.randint(0, 256, (2, 3, 8, 8, 3), dtype=torch.uint8)  # (B, T, H, W, 3)
    batched = uint8_frames_to_input(frames)
    assert batched.shape == (2, 3, 3, 8, 8)
    single = normalise(frames[1].permute(0, 3, 1, 2).float() / 255.0)
    torch.testing.assert_close(batched[1], single)


@pytest.mark.parametrize("shape", [(3, 32, 32, 3), (2, 32, 50, 3), (2, 45, 32, 3), (1, 60, 120, 3), (2, 20, 24, 3)])
def test_uint8_fast_path_gives_the_float_paths_bytes(shape):
    """Media already at the size on its shorter side is only cropped, in uint8: the same bytes as
    the float resize-and-crop round trip (others still take it)."""
    from ops.data.frames import frames_at_size, to_uint8

    frames = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    fast = frames_at_size(frames, 32)
    assert fast.shape == (shape[0], 32, 32, 3) and fast.dtype == np.uint8 and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, to_uint8(resize_and_crop(frames, 32)))


@pytest.mark.parametrize("size", [64, 48])
def test_decoded_frames_are_decords_pixels_and_outlive_the_reader(size):
    """decode_video reads decord's buffer through DLPack instead of `asnumpy()`: the frames must be
    decord's own pixels (cropped / resized as before), writable, and still valid once the reader
    and its batch are gone and other clips have been decoded into fresh buffers."""
    import gc
    import io

    import decord

    from ops.data.frames import decode_video, frames_at_size
    from tests.media_fixtures import clip_bytes

    clips = [clip_bytes(num_frames=16, seed=seed) for seed in range(3)]
    kept = [decode_video(clip, size, 8)[0] for clip in clips]
    gc.collect()
    decode_video(clips[0], size, 8)  # reuses whatever memory the collector freed
    for clip, frames in zip(clips, kept):
        reader = decord.VideoReader(io.BytesIO(clip), num_threads=1)
        expected = reader.get_batch(list(uniform_frame_indices(len(reader), 8))).asnumpy()
        assert frames.flags.writeable and frames.flags.c_contiguous
        np.testing.assert_array_equal(frames, frames_at_size(expected, size))
    assert not np.array_equal(kept[0], kept[1])  # distinct clips, not one shared buffer


def test_decoding_works_when_the_process_set_decords_torch_bridge():
    """A user's code may call decord.bridge.set_bridge("torch"): get_batch then returns tensors,
    and a good clip must still decode (not be reported as corrupt)."""
    import decord

    from ops.data.frames import decode_video
    from tests.media_fixtures import clip_bytes

    clip = clip_bytes(num_frames=16)
    expected = decode_video(clip, 64, 8)[0]
    decord.bridge.set_bridge("torch")
    try:
        frames = decode_video(clip, 64, 8)[0]
    finally:
        decord.bridge.set_bridge("native")
    assert isinstance(frames, np.ndarray)
    np.testing.assert_array_equal(frames, expected)


def test_large_video_frames_decode_in_groups_to_the_same_clip(monkeypatch):
    """Frames over the decode budget are read a few at a time and shrunk at once: the clip is the
    same as one read of every frame, and an absurd frame size is refused before any group."""
    import io

    import decord

    import ops.data.frames
    from ops.data.frames import decode_video, frames_at_size, read_frames, read_frames_at_size
    from ops.data.preprocess import uniform_frame_indices
    from ops.data.samples import SampleError
    from tests.media_fixtures import clip_bytes, wide_video_bytes

    data = clip_bytes(num_frames=16)
    reader = decord.VideoReader(io.BytesIO(data), num_threads=1)
    indices = uniform_frame_indices(len(reader), 8)
    one_read = frames_at_size(read_frames(reader, indices), 32)
    reads = []
    monkeypatch.setattr(ops.data.frames, "read_frames", lambda r, idx: reads.append(len(idx)) or read_frames(r, idx))
    monkeypatch.setattr(ops.data.frames, "DECODE_BUDGET_BYTES", 3 * 64 * 64 * 3)  # three 64x64 frames
    grouped = read_frames_at_size(decord.VideoReader(io.BytesIO(data), num_threads=1), indices, 32)
    assert reads == [1, 3, 3, 1] and np.array_equal(grouped, one_read)

    with pytest.raises(SampleError, match="video_too_large: video frames are 8256x16"):
        decode_video(wide_video_bytes(), 32, 8)
    monkeypatch.setattr(ops.data.frames, "MAX_VIDEO_FRAME_PIXELS", 64 * 64 - 1)
    reads.clear()
    with pytest.raises(SampleError, match="video_too_large: video frames are 64x64"):
        decode_video(data, 32, 8)
    assert reads == [1]  # only the first frame was decoded
