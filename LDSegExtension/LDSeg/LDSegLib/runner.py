"""The engine in a separate process: command line, JSON progress, cancel, state machine.

No Qt here. The widget calls :meth:`EngineJob.poll` from a QTimer (the GUI never
blocks); tests and the self-test call :meth:`EngineJob.wait`. Reading the
process's pipes happens on two daemon threads that only fill a queue.

States: ``idle`` → ``running`` → ``importing`` → ``idle`` (result in the scene),
``running`` → ``cancelling`` → ``idle`` (nothing added), or → ``failed``.
"""

import dataclasses
import enum
import importlib.util
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

#: Stages of ``ldseg segment`` in the order they happen ("info" notes may come at any time).
SEGMENT_STAGES = ("load", "encode", "sample", "decode", "write", "done")
TRAIN_STAGES = ("load", "train", "done")

EXIT_CANCELLED = (130, 143, -signal.SIGTERM, -signal.SIGKILL) if hasattr(signal, "SIGKILL") else (130, 143)


class RunState(str, enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    IMPORTING = "importing"
    CANCELLING = "cancelling"
    FAILED = "failed"


@dataclasses.dataclass
class ProgressEvent:
    stage: str
    fraction: float
    message: str
    extra: dict

    @property
    def isError(self):
        return self.stage == "error"


def parseProgressLine(line):
    """A :class:`ProgressEvent` from one line of ``--progress json`` output, or None for other text."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or "stage" not in data:
        return None
    try:
        fraction = min(1.0, max(0.0, float(data.get("fraction", 0.0))))
    except (TypeError, ValueError):
        fraction = 0.0
    extra = {k: v for k, v in data.items() if k not in ("stage", "fraction", "message")}
    return ProgressEvent(str(data["stage"]), fraction, str(data.get("message", "")), extra)


# --------------------------------------------------------------------------- locating the engine


def insideSlicer():
    try:
        import slicer

        return hasattr(slicer, "app")
    except ImportError:
        return False


def pythonExecutable():
    """Slicer's PythonSlicer inside Slicer (sys.executable is the application there), else this Python."""
    if insideSlicer():
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def enginePackageDir():
    """Folder holding the ``ldseg`` package (in Slicer: the module's lib dir), or None if not installed."""
    spec = importlib.util.find_spec("ldseg")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.dirname(os.path.abspath(list(spec.submodule_search_locations)[0]))


def engineTrainOption(name):
    """Whether the engine's ``ldseg train`` has the option ``name`` (e.g. "time_budget"): its flags
    are the fields of the torch-free ``ldseg.config.TrainOptions``, read in-process."""
    try:
        from ldseg.config import TrainOptions
    except ImportError:
        return False
    return name in {f.name for f in dataclasses.fields(TrainOptions)}


def engineEnvironment(base=None):
    """Environment for the engine process: the ``ldseg`` package importable, unbuffered output."""
    env = dict(os.environ if base is None else base)
    packageDir = enginePackageDir()
    if packageDir:
        env["PYTHONPATH"] = os.pathsep.join([packageDir] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def engineCommand(python=None):
    return [python or pythonExecutable(), "-m", "ldseg"]


def runEngineQuick(args, python=None, env=None, timeout=120):
    """Run a short engine command (``models``, ``info``) to completion; returns stdout. Raises on failure."""
    completed = subprocess.run(
        engineCommand(python) + list(args),
        env=env or engineEnvironment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    if completed.returncode != 0:
        lines = [ln for ln in completed.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError(lines[-1] if lines else f"ldseg {' '.join(args)} failed ({completed.returncode})")
    return completed.stdout


# --------------------------------------------------------------------------- process (tree)


class EngineProcess:
    """One engine process in its own process group / session, read by two threads."""

    def __init__(self, args, env=None, cwd=None):
        self.args = [str(a) for a in args]
        self.env = env
        self.cwd = cwd
        self.popen = None
        self._queue = queue.Queue()
        self._threads = []

    def start(self):
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True  # own process group: cancel reaches the whole tree
        self.popen = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **kwargs,
        )
        for stream, name in ((self.popen.stderr, "stderr"), (self.popen.stdout, "stdout")):
            thread = threading.Thread(target=self._read, args=(stream, name), daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def _read(self, stream, name):
        for line in iter(stream.readline, ""):
            self._queue.put((name, line.rstrip("\n")))
        stream.close()

    def lines(self):
        """(stream, line) pairs read since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def returncode(self):
        return self.popen.poll() if self.popen else None

    def readersDone(self):
        return all(not t.is_alive() for t in self._threads)

    # -- tree termination
    def signalTree(self, kill=False):
        if self.popen is None:
            return
        if os.name == "nt":
            if kill or self.popen.poll() is None:
                subprocess.run(
                    ["taskkill", "/PID", str(self.popen.pid), "/T", "/F"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def treeAlive(self):
        """True while the engine or any process it started (same group) still exists."""
        if self.popen is None:
            return False
        if self.popen.poll() is None:
            return True
        if os.name == "nt":
            return False
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def terminateTree(self, grace=5.0):
        """SIGTERM the group, SIGKILL what is left after ``grace`` seconds; returns when all are gone."""
        self.signalTree(kill=False)
        deadline = time.monotonic() + grace
        while self.treeAlive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.treeAlive():
            self.signalTree(kill=True)
            end = time.monotonic() + 5.0
            while self.treeAlive() and time.monotonic() < end:
                time.sleep(0.05)


# --------------------------------------------------------------------------- job with state machine


class EngineJob:
    """An engine run whose result ends in the scene. Subclasses build the command and import the result.

    Attributes the widget shows: ``state``, ``fraction`` (0..1, the engine's overall fraction),
    ``message``, ``deviceMessage`` (the engine's note on the device used), ``error``.
    """

    stages = SEGMENT_STAGES
    cancelGrace = 5.0

    def __init__(self, python=None, env=None, keepWorkDir=False):
        self.python = python
        self.env = env
        self.keepWorkDir = keepWorkDir
        self.state = RunState.IDLE
        self.fraction = 0.0
        self.message = ""
        self.deviceMessage = ""
        self.error = ""
        self.events = []
        self.log = []
        self.result = None
        self.cancelled = False
        self.succeeded = False
        self.finished = False
        self.workDir = None
        self.process = None
        self.startTime = None
        self.seconds = None
        self._killDeadline = None

    # -- to override
    def prepare(self, workDir):
        """Write inputs into ``workDir``; return the engine arguments (after ``ldseg``)."""
        raise NotImplementedError

    def importResults(self):
        """Bring the outputs into the scene; return the result object."""
        raise NotImplementedError

    def onEvent(self, event):
        """Hook for extra keys (training epochs)."""

    # -- life cycle
    @property
    def busy(self):
        return self.state in (RunState.RUNNING, RunState.IMPORTING, RunState.CANCELLING)

    def start(self):
        """Write the inputs and start the engine. A failure here (ROI outside the volume, a write
        error, no engine) ends the job at once, ``failed`` with the reason, and is raised again."""
        if self.busy:
            raise RuntimeError("This run is already going.")
        if self.finished:
            raise RuntimeError("This run has ended; make a new one.")
        self.workDir = tempfile.mkdtemp(prefix="LDSeg-")
        try:
            args = self.prepare(self.workDir)
            self.process = EngineProcess(
                engineCommand(self.python) + list(args), env=self.env or engineEnvironment(), cwd=self.workDir
            )
            self.process.start()
        except Exception as e:
            self.error = str(e) or e.__class__.__name__
            self.process = None
            self._end(RunState.FAILED, f"Failed: {self.error}")
            raise
        self.startTime = time.monotonic()
        self.state = RunState.RUNNING
        self.message = "Starting the engine..."

    def elapsed(self):
        return 0.0 if self.startTime is None else time.monotonic() - self.startTime

    def remainingEstimate(self):
        """Seconds left, from the elapsed time and the engine's fraction (None until it means something)."""
        if self.state != RunState.RUNNING or self.fraction < 0.05:
            return None
        return self.elapsed() * (1.0 - self.fraction) / self.fraction

    def cancel(self, wait=False):
        """Ask the engine to stop (SIGTERM to its whole process tree); SIGKILL follows after a grace time."""
        if self.state != RunState.RUNNING:
            return
        self.state = RunState.CANCELLING
        self.message = "Cancelling..."
        self.process.signalTree(kill=False)
        self._killDeadline = time.monotonic() + self.cancelGrace
        if wait:
            self.wait()

    def poll(self):
        """Advance the state machine; call often (QTimer). Returns True when something changed."""
        if self.process is None or self.finished:
            return False
        changed = False
        for stream, line in self.process.lines():
            changed = True
            event = parseProgressLine(line) if stream == "stderr" else None
            if event is None:
                if line.strip():
                    self.log.append(line)
                continue
            self.events.append(event)
            if event.isError:
                self.error = event.message
                continue
            if event.stage == "info":
                self.deviceMessage = event.message
            else:
                self.fraction = max(self.fraction, event.fraction)
                self.message = event.message or event.stage
            self.onEvent(event)

        if self.state == RunState.CANCELLING:
            if self.process.treeAlive() and time.monotonic() > self._killDeadline:
                self.process.signalTree(kill=True)
            if not self.process.treeAlive() and self.process.readersDone():
                self.process.lines()
                self.cancelled = True
                self._end(RunState.IDLE, "Cancelled: nothing was added to the scene.")
                return True
            return changed

        returncode = self.process.returncode()
        if returncode is None or not self.process.readersDone():
            return changed
        # the process has ended and its output is read
        for stream, line in self.process.lines():
            event = parseProgressLine(line) if stream == "stderr" else None
            if event is not None and event.isError:
                self.error = event.message
        self.seconds = self.elapsed()
        if returncode != 0:
            if not self.error:
                tail = [ln for ln in self.log if ln.strip()][-3:]
                self.error = " / ".join(tail) or f"The engine stopped with exit code {returncode}."
            if returncode in EXIT_CANCELLED:
                self.cancelled = True
                self._end(RunState.IDLE, "Cancelled: nothing was added to the scene.")
            else:
                self._end(RunState.FAILED, f"Failed: {self.error}")
            return True
        self.state = RunState.IMPORTING
        self.message = "Adding the results to the scene..."
        try:
            self.result = self.importResults()
        except Exception as e:  # noqa: BLE001 -- shown to the user, run ends failed
            self.error = str(e) or e.__class__.__name__
            self._end(RunState.FAILED, f"Failed: {self.error}")
            return True
        self.succeeded = True
        self.fraction = 1.0
        self._end(RunState.IDLE, self.doneMessage())
        return True

    def doneMessage(self):
        return f"Done in {self.seconds:.1f} s."

    def wait(self, timeout=None, interval=0.05):
        """Poll until the run has ended (tests, self-test, scripts). Returns the final state."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            self.poll()
            if self.finished:
                break
            if end is not None and time.monotonic() > end:
                self.cancel()
                raise TimeoutError("The engine did not finish in time; it was cancelled.")
            time.sleep(interval)
        return self.state

    def _end(self, state, message):
        self._killDeadline = None
        self.state = state
        self.message = message
        self.finished = True
        self._cleanup()

    def _cleanup(self):
        if self.workDir and not self.keepWorkDir:
            shutil.rmtree(self.workDir, ignore_errors=True)


def pollJobs(jobs):
    """Poll every unfinished job once (the widget's QTimer tick). Returns (jobs that ended now,
    whether any is still busy): the timer stops when none is, also after a job failed to start."""
    ended = []
    for job in jobs:
        if job is None or job.finished or job.process is None:
            continue
        job.poll()
        if job.finished:
            ended.append(job)
    return ended, any(job is not None and job.busy for job in jobs)
