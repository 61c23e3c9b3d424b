"""The sandboxes of ``labkit grade``: one for the student's worker (:mod:`labkit.student_worker`), one for
the trusted kernel that runs the instructor's notebook (:mod:`labkit.student_code`).

Both are bubblewrap (Debian's ``bubblewrap``) processes with their own PID, IPC, UTS, cgroup and network
namespaces (no network at all, loopback included) in a new session, dying with the grader. The file
system they see is built up, not cut down: the system's ``/usr`` (and the ``/bin``, ``/lib`` links),
a few files of ``/etc``, a fresh ``/dev`` and ``/proc`` (their own processes only), the Python that runs
the kit (interpreter prefix, virtual environment, every ``sys.path`` folder: wherever they live,
``/tmp``, a home directory as with pyenv / conda / uv, ``/opt``), read-only, and an empty size-limited
``/tmp``. Nothing else: no instructor folder, class folder, home directory or host process table.

- the **worker** sees the ``labkit`` package (without its reference files) and its own folder with the
  submission's cells; as root it runs under a user id of its own (``setpriv``), so the limit on
  processes (``prlimit --nproc``) is its alone; memory is limited by address space (``--as``).
- the **trusted kernel** also sees the kit's checkout (notebooks, data, checkpoints) read-only, the data
  folder, its own folder (kernel sockets, answers) and the worker's socket; the ``runs/`` and
  ``checkpoints/cache/`` folders the notebooks write are its folder's own copies (the cache's files
  copied in, so models pretrained before are reused). Grading on a GPU (``labkit grade --device cuda``)
  binds the NVIDIA device files into it and, since CUDA reserves more address space than any useful
  limit, runs it without the memory limit. The worker never sees a GPU.

No Python library confines a process's file system and network; a container runtime is more than a
grading machine should need. ``prlimit`` and ``setpriv`` come with util-linux.

Size (about 410 lines): the worker's and the kernel's bubblewrap command lines share the file-system
view built here.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from jupyter_client import AsyncKernelManager

import labkit
from labkit import HOME, blanks, checkpoints
from labkit.atomic import atomic_open
from labkit.checkpoints import CHECKPOINT_DIR
from labkit.data import data_root

DEFAULT_MEMORY = 6 * 2**30  # bytes of address space per process: ResNet-20 in the quick profile needs < 3 GiB
TMP_SIZE = 512 * 2**20  # bytes of the sandbox's own /tmp
WORKER_PROCESSES = 128  # processes and threads of the worker's user (torch's threads count)
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf",
        "fonts", "alternatives", "ssl/certs")


class SandboxError(OSError):
    """The sandbox cannot run here, or a process cannot start in it (an OSError: `labkit grade` reports it
    in one line)."""


def available() -> str | None:
    """None when the sandbox can run here, else why not."""
    missing = [tool for tool in ("bwrap", "prlimit", "setpriv") if shutil.which(tool) is None]
    if missing:
        return (f"{' and '.join(missing)} not found: install Debian's bubblewrap and util-linux "
                "(`apt-get install bubblewrap util-linux`)")
    return None


def python() -> str:
    """The running interpreter as the sandboxes call it: ``sys.executable`` with ``..`` and ``.`` folded
    (``benchmarks/../.venv/bin/python`` names a folder the worker's sandbox does not have), links kept (a
    virtual environment is found from its ``bin/python`` link, not from what that link points to)."""
    return os.path.abspath(sys.executable)


@functools.cache
def python_paths() -> list[Path]:
    """The folders the running Python needs: its prefixes, its executable's folder and the ``sys.path`` a
    fresh interpreter gets (stdlib, site-packages and what their ``.pth`` files add; not the working
    folder, ``PYTHONPATH`` or what a test runner inserted), resolved, without those inside another."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    fresh = subprocess.run([python(), "-c", "import json, sys; print(json.dumps(sys.path[1:]))"],
                           capture_output=True, text=True, check=True, cwd="/", env=env).stdout
    found = {Path(p).resolve() for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)}
    found.add(Path(os.path.realpath(sys.executable)).parent)
    found |= {Path(p).resolve() for p in json.loads(fresh) if p and Path(p).is_dir()}
    return _outermost(found)


def _outermost(paths) -> list[Path]:
    ordered = sorted(set(paths), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in ordered:
        if not any(p == k or k in p.parents for k in kept):
            kept.append(p)
    return kept


def _base(tmp_size: int) -> list[str]:
    args = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
            "--unshare-cgroup-try", "--new-session", "--die-with-parent", "--dev", "/dev", "--proc", "/proc",
            "--perms", "1777", "--size", str(tmp_size), "--tmpfs", "/tmp"]
    for top in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in _ETC:
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    if Path("/sys/devices/system/cpu").is_dir():  # torch reads the CPU's topology there
        args += ["--ro-bind", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    return args


def _binds(read_only: list[Path], writable: list[tuple[Path, Path]], masked: list[Path] = ()) -> list[str]:
    """Bind arguments, parents before children, every parent folder that no bind provides made as a
    traversable folder (a 0700 home such as ``/root`` would stop another user id at its door); ``masked``
    folders are hidden by an empty read-only tmpfs. Paths under the system folders ``_base`` binds are
    there already."""
    system = [Path("/") / top for top in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")]
    entries = [(p, p, "--ro-bind") for p in _outermost(read_only)
               if not any(s == p or s in p.parents for s in system)]
    entries += [(outside, inside, "--bind") for outside, inside in writable]
    entries.sort(key=lambda e: len(e[1].parts))
    args, made, bound = [], {Path("/"), Path("/tmp")}, list(system)
    for outside, inside, how in entries:
        for parent in reversed(inside.parents):
            if parent in made or any(b == parent or b in parent.parents for b in bound):
                continue
            args += ["--perms", "0755", "--dir", str(parent)]
            made.add(parent)
        args += [how, str(outside), str(inside)]
        bound.append(inside)
    for path in masked:
        args += ["--perms", "0555", "--size", "4096", "--tmpfs", str(path)]
    return args


def _limits(memory: int | None, processes: int | None) -> list[str]:
    if memory is not None and (not isinstance(memory, int) or memory < 2**28):
        raise ValueError(f"memory={memory!r}: allowed is a whole number of bytes >= 256 MiB")
    limits = [f"--as={memory}"] if memory is not None else []
    if processes is not None:
        limits.append(f"--nproc={processes}")
    return ["prlimit", *limits, "--"] if limits else []


def worker_command(folder: Path, channel_dir: Path, memory: int = DEFAULT_MEMORY) -> list[str]:
    """The prefix that runs the student's worker: reads ``folder`` (its cells), writes only its own
    ``/tmp`` and ``channel_dir`` (its socket). As root it becomes user ``worker_uid()``."""
    folder, channel_dir = Path(folder).resolve(), Path(channel_dir).resolve()
    package = Path(labkit.__file__).resolve().parent
    # an editable install may put the checkout itself on sys.path: of it, the worker sees the package only
    paths = [p for p in python_paths() if p != package.parent]
    args = _base(TMP_SIZE) + _binds([*paths, package, folder], [(channel_dir, channel_dir)],
                                    masked=[package / "references"])
    for module, blanked in _blanked_modules(package, folder / "blanked"):
        args += ["--ro-bind", str(blanked), str(module)]
    args += ["--setenv", "HOME", "/tmp", "--chdir", "/tmp"]
    if os.geteuid() == 0:
        uid = worker_uid()
        os.chown(channel_dir, uid, uid)
        return [*args, "--cap-add", "CAP_SETUID,CAP_SETGID", "--", "setpriv", f"--reuid={uid}",
                f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                *_limits(memory, WORKER_PROCESSES)]
    return [*args, "--", *_limits(memory, _user_tasks() + WORKER_PROCESSES)]


@functools.cache
def _blanked_sources(package: Path) -> tuple[tuple[Path, str], ...]:
    """``(module, its blanked source)`` for each module of ``package`` that implements a blank students
    write (:func:`labkit.blanks.blanked_source`); read and parsed once per grading process."""
    found = ((module, blanks.blanked_source(module.read_text())) for module in sorted(package.glob("*.py")))
    return tuple((module, text) for module, text in found if text is not None)


def _blanked_modules(package: Path, out: Path) -> list[tuple[Path, Path]]:
    """``(module, its copy)`` for each module of ``package`` that implements a blank students write, the
    copy (written to ``out``) with those functions' bodies a ``raise`` (:mod:`labkit.blanks`)."""
    pairs = []
    for module, text in _blanked_sources(package):
        out.mkdir(mode=0o755, exist_ok=True)
        copy = out / module.name
        copy.write_text(text)
        copy.chmod(0o644)
        pairs.append((module, copy))
    return pairs


def worker_uid() -> int:
    """A user id no one else on this machine runs as: 200000 + this grading process's pid (so each of
    ``--jobs N`` has its own, and a fork bomb counts against its own process limit only)."""
    return 200_000 + os.getpid()


def _user_tasks() -> int:
    """Processes and threads of this user now (RLIMIT_NPROC counts them all for a non-root user)."""
    uid, count = os.getuid(), 0
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            text = Path(status).read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            count += int(fields.get("Threads", "1"))
    return count


def kernel_command(folder: Path, channel_dir: Path | None = None,
                   memory: int = DEFAULT_MEMORY) -> list[str]:
    """The prefix that runs the trusted kernel: writable only in ``folder`` (and ``channel_dir``)."""
    folder = Path(folder).resolve()
    writable = [(folder, folder)]
    # (folder the notebooks write, whether its files come in): models pretrained before are reused;
    # runs/ starts empty
    for inside, copied in ((HOME / "runs", False), (CHECKPOINT_DIR / "cache", True)):
        outside = _writable_copy(folder, inside)
        inside.mkdir(parents=True, exist_ok=True)  # a mount point must exist
        if copied:
            shutil.copytree(inside, outside, dirs_exist_ok=True)
        outside.mkdir(parents=True, exist_ok=True)
        writable.append((outside, inside.resolve()))
    if channel_dir is not None:
        writable.append((Path(channel_dir).resolve(),) * 2)
    readable = [*python_paths(), HOME.resolve()]
    data = data_root().resolve()  # wherever it lies, /tmp included
    if data.is_dir():
        readable.append(data)
    args = _base(TMP_SIZE) + _binds(readable, writable)
    gpus = gpu_devices()
    args += [arg for node in gpus for arg in ("--dev-bind", node, node)]
    # ipykernel exits when its parent is not the process JPY_PARENT_PID names, and in its own PID namespace
    # its parent is bwrap's init: pid 1, which ipykernel knows not to watch (--die-with-parent ends it)
    args += ["--setenv", "HOME", str(folder), "--setenv", "JPY_PARENT_PID", "1", "--chdir", str(folder), "--"]
    # CUDA reserves far more address space than any useful --as limit: GPU kernels go without it.
    return args + _limits(None if gpus else memory, None)


def _writable_copy(folder: Path, inside: Path) -> Path:
    return folder / "writable" / inside.relative_to(HOME)


def keep_new_cache(folder: Path) -> list[Path]:
    """Copy the checkpoints the trusted kernel of ``folder`` (see :func:`kernel_command`) added to its
    cache copy into the real ``checkpoints/cache`` (each atomically, only names not there yet, only files
    that read as labkit checkpoints), so the next submission reuses them; return the new paths. The trusted
    kernel runs labkit's code alone and caches only what labkit made from its own checkpoints and data
    (pretrained models, Lab 2 (e)'s model), never a result of the student's functions."""
    kept = []
    for made in sorted(_writable_copy(Path(folder), CHECKPOINT_DIR / "cache").glob("*.pt")):
        target = CHECKPOINT_DIR / "cache" / made.name
        if target.exists() or not made.is_file() or made.is_symlink():
            continue
        try:
            checkpoints.load_checkpoint(made)
        except (checkpoints.CheckpointError, KeyError, OSError):
            continue
        with atomic_open(target, "wb") as f, open(made, "rb") as src:
            shutil.copyfileobj(src, f)
        kept.append(target)
    return kept


def gpu_devices() -> list[str]:
    """The NVIDIA device files a trusted kernel needs when grading is asked to use CUDA (``LABKIT_DEVICE``
    cuda or auto, as ``labkit grade --device`` sets it); none otherwise, so a CPU grading sees no GPU."""
    if not os.environ.get("LABKIT_DEVICE", "cpu").startswith(("cuda", "auto")):
        return []
    return sorted(glob.glob("/dev/nvidia*"))


def preflight(folder: Path, memory: int = DEFAULT_MEMORY) -> None:
    """Start Python in both sandboxes at once, importing what grading needs; SandboxError naming the cause
    (the sandbox's own last line of output) if either fails."""
    checks = {"the student's worker": (worker_command, "import labkit.student_worker, torch"),
              "the grading kernel": (kernel_command, "import ipykernel, labkit.grading, torch")}
    started = {}
    for what, (prefix, code) in checks.items():
        sub = Path(folder) / what.split()[-1]
        sub.mkdir(parents=True, exist_ok=True)
        try:
            started[what] = subprocess.Popen([*prefix(sub, sub, memory), python(), "-c", code],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                             env=_plain_env())
        except OSError as exc:
            raise SandboxError(f"{what} cannot start in the sandbox: {exc}") from None
    for what, process in started.items():
        try:
            _, err = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            err = "it did not start within 300 s"
        if process.returncode != 0:
            last = (err.strip().splitlines() or [f"exit status {process.returncode}"])[-1]
            raise SandboxError(f"{what} cannot start in the sandbox: {last} (Python: {python()}; "
                               "`labkit grade --no-sandbox` grades without the sandbox)")


def _plain_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LABKIT_HOME", "LABKIT_DATA")
    return {k: os.environ[k] for k in keep if k in os.environ}


class Confined:
    """A process started with a :func:`worker_command` prefix (or none), and a watchdog thread that every
    ``period`` seconds kills every other process in its sandbox: what it forks and what was orphaned to
    bwrap's init in its PID namespace. The student's code may not start processes while graded; a fork
    bomb lives a fraction of a second at most. :meth:`stop` kills it all."""

    def __init__(self, command: list[str], env: dict[str, str], period: float = 0.2):
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        self.sandboxed = command[0] == "bwrap"
        self._stopped = threading.Event()
        self._main: int | None = None
        self._watchdog = threading.Thread(target=self._watch, args=(period,), daemon=True)
        self._watchdog.start()

    def _watch(self, period: float) -> None:
        while not self._stopped.wait(period) and self.process.poll() is None:
            self.reap()

    def reap(self) -> None:
        """Kill every process of the sandbox but the confined process itself."""
        init = self.process.pid
        if self.sandboxed:
            inits = _children(init)
            if not inits:
                return
            init = inits[0]
        for child in _children(init):
            if self._main is None and (not self.sandboxed or _comm(child) != "bwrap"):
                self._main = child if self.sandboxed else init
            if child != self._main:
                kill_tree(child)
        if self._main is not None and self._main != init:
            for child in _children(self._main):
                kill_tree(child)

    def stop(self) -> None:
        self._stopped.set()
        kill_tree(self.process.pid)
        self.process.wait()


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (a bwrap and what runs in it)."""
    for child in _children(pid):
        kill_tree(child)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(c) for c in path.read_text().split()]
    except OSError:
        return []


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs under :func:`kernel_command` and connects over Unix sockets. It
    is the asynchronous manager nbclient itself uses: with the synchronous one, nbclient never interrupts
    a cell that runs past its timeout."""

    def __init__(self, folder: Path, memory: int = DEFAULT_MEMORY, channel_dir: Path | None = None, **kwargs):
        super().__init__(transport="ipc", connection_file=str(Path(folder) / "kernel.json"), **kwargs)
        self.ip = str(Path(folder) / "kernel-ipc")
        self._prefix = kernel_command(folder, channel_dir, memory)

    def format_kernel_cmd(self, extra_arguments=None):
        return self._prefix + [python() if arg == sys.executable else arg
                               for arg in super().format_kernel_cmd(extra_arguments)]

    async def interrupt_kernel(self):
        """SIGINT to the kernel itself. jupyter_client signals the launched process's group, which holds
        bwrap too; bwrap dies of SIGINT and takes the kernel with it, so a cell past the timeout would end
        the whole submission instead of raising KeyboardInterrupt in that cell. The kernel is the first
        process below bwrap (and bwrap's own init in the new PID namespace) that is not bwrap."""
        pid = self.provisioner.pid if self.has_kernel else None
        while pid is not None and _comm(pid) == "bwrap":
            children = _children(pid)
            pid = children[0] if children else None
        if pid is not None:  # None: bwrap has not started the kernel yet, or it is gone
            os.kill(pid, signal.SIGINT)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kernel_manager(folder: Path, sandbox: bool = True, memory: int = DEFAULT_MEMORY,
                   channel_dir: Path | None = None) -> SandboxedKernelManager | None:
    """A sandboxed KernelManager for a trusted kernel working in ``folder``; None (nbclient's default
    kernel) when ``sandbox`` is False."""
    if not sandbox:
        return None
    return SandboxedKernelManager(folder, memory, channel_dir, kernel_name="python3")
