"""labkit grade's sandboxes: a submission that writes outside its folder, opens a socket or allocates past
the memory limit is stopped there, and the rest of its answers are still graded; the commands' limits."""

import copy
import socket
import threading

import nbformat
import pytest

from labkit import autograde, sandbox
from labkit.results import totals

pytestmark = pytest.mark.skipif(sandbox.available() is not None, reason="bubblewrap is not installed")
EVIL = '''import socket
import numpy as np
for attempt in (lambda: open({target!r}, "w").write("pwned"),
                lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2),
                lambda: np.ones(2 * 10**9)):  # 16 GB, past the 4 GiB limit
    try:
        attempt()
    except Exception as exc:
        print("stopped:", type(exc).__name__)
'''


@pytest.mark.slow
def test_a_hostile_cell_is_stopped_and_the_rest_is_graded(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(1)
    accepted = []

    def listen():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=listen)
    thread.start()
    material = autograde.load_material("01_sparse_linear")
    nb = copy.deepcopy(material.notebook)
    target = tmp_path / "outside" / "pwned.txt"
    target.parent.mkdir()
    nb.cells.insert(3, nbformat.v4.new_code_cell(EVIL.format(target=str(target),
                                                             port=server.getsockname()[1])))
    path = tmp_path / "evil_01_sparse_linear.ipynb"
    nbformat.write(nb, path)
    rows = autograde.grade_one(path, material, "quick", timeout=60, memory=4 * 2**30)
    thread.join()
    server.close()
    assert not target.exists() and not accepted
    assert totals(rows) == (sum(e["points"] for e in material.catalog().values()),) * 2


def test_the_sandbox_command_refuses_a_silly_memory_limit(tmp_path):
    with pytest.raises(ValueError, match="memory"):
        sandbox.kernel_command(tmp_path, memory=1000)
    with pytest.raises(ValueError, match="memory"):
        sandbox.worker_command(tmp_path, tmp_path, memory=1000)


def test_a_gpu_grading_binds_the_nvidia_devices_and_a_cpu_grading_hides_them(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox.glob, "glob", lambda pattern: ["/dev/nvidia0", "/dev/nvidiactl"])
    monkeypatch.setenv("LABKIT_DEVICE", "cuda")
    gpu = sandbox.kernel_command(tmp_path)
    assert "--dev-bind" in gpu and "/dev/nvidiactl" in gpu and not any(a.startswith("--as") for a in gpu)
    monkeypatch.setenv("LABKIT_DEVICE", "cpu")
    cpu = sandbox.kernel_command(tmp_path)
    assert "--dev-bind" not in cpu and f"--as={sandbox.DEFAULT_MEMORY}" in cpu


def test_keep_new_cache_copies_back_only_new_labkit_checkpoints(monkeypatch, tmp_path):
    from labkit import checkpoints
    from labkit.models import lenet5

    home = tmp_path / "home"
    cache = home / "checkpoints" / "cache"
    cache.mkdir(parents=True)
    monkeypatch.setattr(sandbox, "HOME", home)
    monkeypatch.setattr(sandbox, "CHECKPOINT_DIR", home / "checkpoints")
    made = tmp_path / "kernel" / "writable" / "checkpoints" / "cache"
    made.mkdir(parents=True)
    checkpoints.save_checkpoint(lenet5(), made / "new.pt", arch="lenet5", dataset="mnist")
    checkpoints.save_checkpoint(lenet5(), made / "old.pt", arch="lenet5", dataset="mnist")
    (cache / "old.pt").write_bytes(b"the host's own file")
    (made / "garbage.pt").write_bytes(b"not a checkpoint")
    kept = sandbox.keep_new_cache(tmp_path / "kernel")
    assert kept == [cache / "new.pt"]
    assert (cache / "new.pt").read_bytes() == (made / "new.pt").read_bytes()
    assert (cache / "old.pt").read_bytes() == b"the host's own file"  # never replaced
    assert not (cache / "garbage.pt").exists()
