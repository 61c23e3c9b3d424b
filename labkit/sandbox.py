"""The sandbox a submission's kernel runs in during ``labkit grade``: no network, the file system read-only
but for the submission's own temporary folder, and a memory limit.

bubblewrap (Debian's ``bubblewrap``) does the isolation and util-linux's ``prlimit`` the memory limit:
no Python library confines a process's file system and network, and a container runtime is more than a
grading machine should need. The kernel talks to the grader over Unix sockets in the temporary folder
(jupyter's ``ipc`` transport), since the sandbox has no network, loopback included. The kit and its
data stay readable; the repository's ``runs/`` and ``checkpoints/cache/`` folders, which notebooks
write, are the temporary folder's own copies inside the sandbox (the cache's files copied in, so models
pretrained before are reused and what a submission trains or writes there stays in its folder). Grading
on a GPU (``labkit grade --device cuda``) binds the NVIDIA device files in and, since CUDA reserves more
address space than any useful limit, runs those kernels without the memory limit.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import warnings
from pathlib import Path

from jupyter_client import AsyncKernelManager

from labkit import HOME
from labkit.checkpoints import CHECKPOINT_DIR
from labkit.data import data_root

DEFAULT_MEMORY = 6 * 2**30  # bytes of address space per kernel: ResNet-20 in the quick profile needs < 3 GiB


def available() -> str | None:
    """None when the sandbox can run here, else why not."""
    missing = [tool for tool in ("bwrap", "prlimit") if shutil.which(tool) is None]
    if missing:
        return (f"{' and '.join(missing)} not found: install Debian's bubblewrap and util-linux "
                "(`apt-get install bubblewrap`)")
    return None


def command(folder: Path, memory: int = DEFAULT_MEMORY) -> list[str]:
    """The prefix that runs a command sandboxed, writable only in ``folder``."""
    if not isinstance(memory, int) or memory < 2**28:
        raise ValueError(f"memory={memory!r}: allowed is a whole number of bytes >= 256 MiB")
    folder = Path(folder).resolve()
    binds = []
    # (folder the notebooks write, whether its files come in): models pretrained before (e.g. on
    # CIFAR-10) are reused; runs/ starts empty
    for inside, copied in ((HOME / "runs", False), (CHECKPOINT_DIR / "cache", True)):
        outside = folder / "writable" / inside.relative_to(HOME)
        inside.mkdir(parents=True, exist_ok=True)  # a mount point must exist
        if copied:
            shutil.copytree(inside, outside, dirs_exist_ok=True)
        outside.mkdir(parents=True, exist_ok=True)
        binds += ["--bind", str(outside), str(inside)]
    data = data_root().resolve()  # readable even where it lies under /tmp, which the sandbox empties
    if data.is_dir():
        binds += ["--ro-bind", str(data), str(data)]
    gpus = gpu_devices()
    binds += [arg for node in gpus for arg in ("--dev-bind", node, node)]
    # CUDA reserves far more address space than any useful --as limit: GPU kernels go without it.
    limit = [] if gpus else ["prlimit", f"--as={memory}", "--"]
    return ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--bind", str(folder), str(folder), *binds, "--unshare-net",
            "--die-with-parent", "--setenv", "HOME", str(folder), "--chdir", str(folder), *limit]


def gpu_devices() -> list[str]:
    """The NVIDIA device files a sandboxed kernel needs when grading is asked to use CUDA (``LABKIT_DEVICE``
    cuda or auto, as ``labkit grade --device`` sets it); none otherwise, so a CPU grading sees no GPU."""
    if not os.environ.get("LABKIT_DEVICE", "cpu").startswith(("cuda", "auto")):
        return []
    return sorted(glob.glob("/dev/nvidia*"))


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs under :func:`command` and connects over Unix sockets. It is
    the asynchronous manager nbclient itself uses: with the synchronous one, nbclient never interrupts
    a cell that runs past its timeout."""

    def __init__(self, folder: Path, memory: int = DEFAULT_MEMORY, **kwargs):
        super().__init__(transport="ipc", connection_file=str(Path(folder) / "kernel.json"), **kwargs)
        self.ip = str(Path(folder) / "kernel-ipc")
        self._prefix = command(folder, memory)

    def format_kernel_cmd(self, extra_arguments=None):
        return self._prefix + super().format_kernel_cmd(extra_arguments)

    async def interrupt_kernel(self):
        """SIGINT to the kernel itself. jupyter_client signals the launched process's group, which
        holds bwrap too; bwrap dies of SIGINT and takes the kernel with it, so a cell past the timeout
        would end the whole submission instead of raising KeyboardInterrupt in that cell."""
        launched = self.provisioner.pid if self.has_kernel else None
        children = Path(f"/proc/{launched}/task/{launched}/children")
        kernels = children.read_text().split() if launched and children.exists() else []
        if not kernels:  # bwrap has not started the kernel yet, or it is gone: nothing to interrupt
            return
        os.kill(int(kernels[0]), signal.SIGINT)


def kernel_manager(folder: Path, sandbox: bool = True, memory: int = DEFAULT_MEMORY
                   ) -> SandboxedKernelManager | None:
    """A sandboxed KernelManager for a kernel working in ``folder``; None (nbclient's default kernel) when
    ``sandbox`` is False. Without bubblewrap it warns, loudly, and returns None: grading goes on
    unconfined rather than not at all, and says so."""
    if not sandbox:
        return None
    why = available()
    if why:
        warnings.warn(f"labkit grade: submissions run WITHOUT a sandbox: {why}", stacklevel=2)
        return None
    return SandboxedKernelManager(folder, memory, kernel_name="python3")
