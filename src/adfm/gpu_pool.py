"""Run a job on GPUs of its own: `python -m adfm.gpu_pool --gpus K [--devices 0,1] -- COMMAND ...`.

Snakemake counts a `gpu` resource but never says which card a job gets, so without this wrapper
every job of a multi-GPU machine runs on cuda:0. Each device of the pool has a lock file; a job
takes K of them with flock, exports their ids as CUDA_VISIBLE_DEVICES before the command (and so
torch) starts, and holds them until it ends. The kernel drops a flock with the last process that
holds it, so a killed job (SIGKILL included) gives its GPUs back without anyone cleaning up.

Where a scheduler has already chosen the GPUs (a SLURM job: SLURM sets CUDA_VISIBLE_DEVICES), the
command runs with those and takes nothing from the pool. Only the standard library is imported:
this runs in every rule's environment and must start in milliseconds.

Each job's log gets two lines the tests (and a user wondering which card a job used) read:
    adfm gpu_pool: acquired CUDA_VISIBLE_DEVICES=1 source=pool pid=123 at=<ISO time>
    adfm gpu_pool: released CUDA_VISIBLE_DEVICES=1 source=pool pid=123 exit=0 at=<ISO time>
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEVICES_ENV = "ADFM_GPU_DEVICES"  # the pool's device ids, when not given by --devices
LOCK_DIR_ENV = "ADFM_GPU_LOCK_DIR"  # where the pool's lock files live, when not given by --lock-dir
SCHEDULER_ENVS = ("SLURM_JOB_ID",)  # set inside a job whose GPUs a scheduler chose


# The two lines run() writes into each job's log (event_line), read back by log_records()
LOG_LINE = re.compile(
    r"^adfm gpu_pool: (?P<event>acquired|released) CUDA_VISIBLE_DEVICES=(?P<devices>\S*) "
    r"source=(?P<source>\S+) pid=(?P<pid>\d+)(?: exit=(?P<exit>-?\d+))? at=(?P<at>\S+)$",
    re.MULTILINE,
)


def event_line(event: str, devices: str, source: str, exit_code: int | None = None) -> str:
    """An acquired / released line, as LOG_LINE reads it."""
    ended = "" if exit_code is None else f" exit={exit_code}"
    at = datetime.datetime.now(datetime.UTC).isoformat()
    return f"adfm gpu_pool: {event} CUDA_VISIBLE_DEVICES={devices} source={source} pid={os.getpid()}{ended} at={at}"


def log_records(text: str) -> list[dict[str, str]]:
    """The acquired / released lines of a job's log, in order, as fields (exit is None when acquired)."""
    return [match.groupdict() for match in LOG_LINE.finditer(text)]


class PoolError(Exception):
    """A job that cannot get its GPUs (more asked than the pool has)."""


@dataclass(frozen=True)
class Grant:
    """The devices a job runs on, where they came from, and the open lock files holding them."""

    devices: tuple[str, ...]
    source: str  # pool, scheduler or none
    lock_fds: tuple[int, ...] = ()


def parse_ids(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def detect_devices() -> list[str]:
    """The machine's GPU indices from nvidia-smi (no torch: importing it takes seconds)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        query = ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"]
        out = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_ids(out.replace("\n", ","))


def pool_devices(devices: str | None, environ: dict[str, str]) -> list[str]:
    """The pool: --devices, else $ADFM_GPU_DEVICES, else the caller's CUDA_VISIBLE_DEVICES (a user
    who hides cards from the workflow), else every GPU nvidia-smi lists."""
    for given in (devices, environ.get(DEVICES_ENV)):
        if given and given.strip():
            return parse_ids(given)
    if "CUDA_VISIBLE_DEVICES" in environ:  # set but empty: the user hid every GPU
        return parse_ids(environ["CUDA_VISIBLE_DEVICES"])
    return detect_devices()


def default_lock_dir() -> Path:
    # per user, on the machine's own disk: the pool is this machine's cards, not a shared folder's
    return Path(tempfile.gettempdir()) / f"adfm-gpu-locks-{os.getuid()}"


def try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive flock on `path`, or None when another job holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def try_acquire(devices: list[str], count: int, lock_dir: Path) -> Grant | None:
    """`count` free devices of the pool, locked, or None (nothing held) when fewer are free."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    taken: list[tuple[str, int]] = []
    for device in devices:
        fd = try_lock(lock_dir / f"gpu-{device}.lock")
        if fd is not None:
            taken.append((device, fd))
            if len(taken) == count:
                return Grant(tuple(d for d, _ in taken), "pool", tuple(fd for _, fd in taken))
    for _, fd in taken:
        os.close(fd)
    return None


def acquire(
    count: int,
    devices: str | None = None,
    lock_dir: Path | None = None,
    environ: dict[str, str] | None = None,
    poll_s: float = 2.0,
    log=print,
) -> Grant:
    """The GPUs a job of `count` GPUs runs on, waiting until enough of the pool are free."""
    environ = dict(os.environ if environ is None else environ)
    if count == 0:
        return Grant((), "none")
    if any(environ.get(name) for name in SCHEDULER_ENVS):
        chosen = parse_ids(environ.get("CUDA_VISIBLE_DEVICES"))
        if count and len(chosen) != count:
            log(
                f"adfm gpu_pool: warning: the job asks for {count} GPU(s), the scheduler gave "
                f"CUDA_VISIBLE_DEVICES={','.join(chosen) or '(none)'}"
            )
        return Grant(tuple(chosen), "scheduler")
    pool = pool_devices(devices, environ)
    if not pool:
        raise PoolError(
            f"the job asks for {count} GPU(s) but no GPU was found (no --devices, "
            f"no ${DEVICES_ENV}, no CUDA_VISIBLE_DEVICES, no nvidia-smi); set "
            "resources.gpu_devices in config.yaml, or resources.<family>.gpu: 0 to run on the CPU"
        )
    if count > len(pool):
        raise PoolError(
            f"the job asks for {count} GPUs but the pool has {len(pool)} "
            f"(devices {','.join(pool)}); lower resources.<family>.gpu or add devices"
        )
    lock_dir = Path(lock_dir or environ.get(LOCK_DIR_ENV) or default_lock_dir())
    waiting = False
    while (grant := try_acquire(pool, count, lock_dir)) is None:
        if not waiting:
            waiting = True
            log(f"adfm gpu_pool: waiting for {count} free GPU(s) of {','.join(pool)} (locks in {lock_dir})")
        time.sleep(poll_s)
    return grant


PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def become_subreaper() -> bool:
    """Adopt the command's orphans (Linux): torchrun starts each training process in a session of
    its own, so when `accelerate launch` is killed its workers would run on, on cards the pool would
    call free. As their subreaper this process sees them, and ends them before giving the cards back."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def adopted_children() -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            pids += [int(pid) for pid in task.read_text().split()]
        except OSError:
            continue
    return pids


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_leftovers(grace_s: float, log=print) -> None:
    """SIGTERM, then after `grace_s` SIGKILL, every process the command left behind."""
    deadline = time.monotonic() + grace_s
    signum = signal.SIGTERM
    reap()
    while pids := adopted_children():
        if signum == signal.SIGTERM:
            log(f"adfm gpu_pool: stopping {len(pids)} process(es) the command left running: {pids}")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(pid, signum)
        time.sleep(0.1)
        reap()
        if time.monotonic() > deadline:
            signum = signal.SIGKILL


def run(
    command: list[str], grant: Grant, environ: dict[str, str] | None = None, log=print, grace_s: float = 10.0
) -> int:
    """Run `command` on the granted devices; the child shares the locks, so they are held until
    both this process and the command (with whatever it left running) have ended, however each ends."""
    env = dict(os.environ if environ is None else environ)
    if grant.source != "scheduler":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(grant.devices)
    shown = env.get("CUDA_VISIBLE_DEVICES", "")
    # Snakemake stops a job with SIGTERM (SIGINT on Ctrl-C): pass it on to the command, also one that
    # arrives while the command is starting, then report how it ended.
    children: list[subprocess.Popen] = []
    pending: list[int] = []

    def forward(signum, _frame):
        if children:
            children[0].send_signal(signum)
        else:
            pending.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    subreaper = become_subreaper()
    log(event_line("acquired", shown, grant.source))
    try:
        children.append(subprocess.Popen(command, env=env, pass_fds=grant.lock_fds))
    except OSError as error:
        log(f"adfm gpu_pool: cannot start {command[0]!r}: {error}")
        return 127
    for signum in pending:
        children[0].send_signal(signum)
    code = children[0].wait()
    if subreaper:
        end_leftovers(grace_s, log)
    log(event_line("released", shown, grant.source, code))
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adfm.gpu_pool",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gpus", type=int, required=True, help="how many GPUs the job needs (0: hide every GPU)")
    parser.add_argument(
        "--devices",
        help=f"the pool's device ids, comma-separated (default: ${DEVICES_ENV}, "
        "else CUDA_VISIBLE_DEVICES, else nvidia-smi's list)",
    )
    parser.add_argument(
        "--lock-dir", type=Path, help=f"folder of the lock files (default: ${LOCK_DIR_ENV}, else {default_lock_dir()})"
    )
    parser.add_argument("--poll-seconds", type=float, default=2.0, help="how often a waiting job looks again")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    if args.gpus < 0:
        parser.error(f"--gpus must be 0 or more, not {args.gpus}")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        grant = acquire(args.gpus, args.devices or None, args.lock_dir, poll_s=args.poll_seconds, log=log)
    except PoolError as error:
        log(f"adfm gpu_pool: error: {error}")
        return 2
    return run(command, grant, log=log)


if __name__ == "__main__":
    sys.exit(main())
