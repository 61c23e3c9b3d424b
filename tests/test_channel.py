"""The channel between the trusted kernel and the student's worker: data round-trips exactly, anything else is
refused, and a malformed or oversized message is an error, never a value."""

import math
import socket
import struct

import numpy as np
import pytest
import torch

from labkit import channel


def _roundtrip(value):
    tree, buffers = channel.encode(value)
    return channel.decode(tree, buffers)


@pytest.mark.parametrize("dtype", ["bool", "int8", "int16", "int32", "int64", "uint8", "float16",
                                   "float32", "float64", "complex64"])
def test_numpy_arrays_keep_dtype_shape_and_values(dtype):
    a = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    got = _roundtrip(a)
    assert type(got) is np.ndarray and got.dtype == a.dtype and got.shape == a.shape
    assert np.array_equal(got, a) and got.flags.writeable


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.float32, torch.float64, torch.bfloat16,
                                   torch.float16, torch.uint8])
def test_tensors_keep_dtype_shape_and_values(dtype):
    t = (torch.arange(12).reshape(3, 4) % 3).to(dtype)
    got = _roundtrip(t)
    assert isinstance(got, torch.Tensor) and got.dtype == t.dtype and got.shape == t.shape
    assert torch.equal(got, t)


def test_containers_scalars_and_special_floats_round_trip():
    value = {"a": [1, 2.5, None, True, "s"], 3: (np.float32(1.5), np.int64(7)), "nan": math.nan,
             "inf": -math.inf, "big": 2**80, "empty": torch.zeros(0, 3), 0.5: {"x": ()}}
    got = _roundtrip(value)
    assert got["a"] == [1, 2.5, None, True, "s"] and type(got[3]) is tuple
    assert isinstance(got[3][0], np.float32) and got[3][0] == 1.5 and isinstance(got[3][1], np.int64)
    assert math.isnan(got["nan"]) and got["inf"] == -math.inf and got["big"] == 2**80
    assert got["empty"].shape == (0, 3) and got[0.5] == {"x": ()}


class _Sneaky(np.ndarray):
    def __eq__(self, other):  # what a forged answer would do: equal to anything
        return True


@pytest.mark.parametrize("value", [object(), lambda: 1, np.array([object()]), {(1, 2): 3}, {1, 2},
                                   torch.nn.Linear(2, 2)])
def test_anything_but_data_is_refused(value):
    with pytest.raises(channel.UnsendableError):
        channel.encode(value)


def test_an_array_subclass_arrives_as_a_plain_array():
    got = _roundtrip(np.zeros(3).view(_Sneaky))
    assert type(got) is np.ndarray and not (got == np.ones(3)).all()


@pytest.mark.parametrize("tree, buffers", [
    ({"$array": 0, "dtype": "float64", "shape": [3]}, [b"\0" * 16]),  # 3 floats need 24 bytes
    ({"$array": 1, "dtype": "float64", "shape": [1]}, [b"\0" * 8]),  # no buffer 1
    ({"$array": 0, "dtype": "object", "shape": [1]}, [b"\0" * 8]),
    ({"$array": 0, "dtype": "int8", "shape": [-1]}, [b""]),
    ({"$pickle": "gASV"}, []),
    ({"$dict": [[["a"], 1]]}, []),
    ([1, 2], []),
    (1.5, []),
])
def test_a_malformed_tree_is_an_error(tree, buffers):
    with pytest.raises(channel.ChannelError):
        channel.decode(tree, buffers)


def test_messages_frame_and_bad_frames_are_refused():
    a, b = socket.socketpair()
    tree, buffers = channel.encode({"w": np.arange(5.0)})
    channel.send(a, {"result": tree}, buffers)
    header, got = channel.recv(b)
    assert np.array_equal(channel.decode(header["result"], got)["w"], np.arange(5.0))
    a.sendall(struct.pack("!Q", channel.MAX_MESSAGE + 1))
    with pytest.raises(channel.ChannelError, match="allowed"):
        channel.recv(b)
    a.sendall(struct.pack("!Q", 10) + struct.pack("!I", 2) + b"{}" + b"xxxx")  # sizes do not add up
    with pytest.raises(channel.ChannelError, match="sizes"):
        channel.recv(b)
    a.close()
    with pytest.raises(channel.ChannelError, match="closed"):
        channel.recv(b)
