"""`genpose launch FILE [name:=value ...]`: run a YAML launch file without the ROS `launch` package.

The files in launch/ are standard ROS 2 YAML launch files (``ros2 launch genpose_ros
sim.launch.yaml`` on a workstation). This reads the same files: ``arg`` (name, default,
description), ``node`` (pkg, exec, name, namespace (empty: none), param: ``from`` files and
``name``/``value`` pairs, remap, args, ``if``/``unless`` with true/false/1/0 as ros2 launch) and
``executable`` (cmd); substitutions ``$(var x)``, ``$(env X)``,
``$(env X default)`` and ``$(find-pkg-share genpose_ros)``. Every node runs as a subprocess with
``--ros-args --params-file ... -p ... -r ...``; Ctrl-C (SIGINT) is forwarded to all of them.
Nodes of other packages (rviz2) are started only if their executable is on PATH.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from genpose_ros.config import yaml_problem
from genpose_ros.paths import PACKAGE, package_share
from genpose_ros.ros.start import NODES

_SUBST = re.compile(r"\$\(([a-z-]+)((?:\s+[^)\s]+)*)\s*\)")


class LaunchError(ValueError):
    """The launch file cannot be read or run (the message names the file and the problem)."""


@dataclass
class Process:
    name: str
    cmd: list[str]
    popen: subprocess.Popen | None = None
    log: list[str] = field(default_factory=list)


def substitute(text, args: dict[str, str], where: str = "") -> str:
    """Resolve the substitutions in ``text`` (a scalar of the launch file)."""
    if not isinstance(text, str):
        return text

    def one(m):
        kind, rest = m.group(1), m.group(2).split()
        if kind == "var":
            if not rest or rest[0] not in args:
                raise LaunchError(f"{where}: $(var {' '.join(rest)}) is not a declared argument "
                                  f"(declared: {', '.join(sorted(args)) or 'none'})")
            return str(args[rest[0]])
        if kind == "env":
            if not rest:
                raise LaunchError(f"{where}: $(env) needs a variable name")
            value = os.environ.get(rest[0], " ".join(rest[1:]) if len(rest) > 1 else None)
            if value is None:
                raise LaunchError(f"{where}: environment variable {rest[0]} is not set")
            return value
        if kind == "find-pkg-share":
            if rest != [PACKAGE]:
                raise LaunchError(f"{where}: $(find-pkg-share {' '.join(rest)}) - only {PACKAGE} "
                                  "is known here")
            return str(package_share())
        raise LaunchError(f"{where}: unsupported substitution $({kind} ...)")

    return _SUBST.sub(one, text)


def _truthy(value: str, where: str) -> bool:
    """An ``if``/``unless`` value, accepted as ``ros2 launch`` does: true, false, 1 or 0."""
    v = str(value).strip().lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise LaunchError(f"{where}: condition {value!r} must be true, false, 1 or 0 (as ros2 launch accepts)")


def _node_command(entry: dict, args: dict, where: str) -> list[str] | None:
    sub = lambda v: substitute(v, args, where)  # noqa: E731
    pkg, exe = sub(entry.get("pkg", "")), sub(entry.get("exec", ""))
    if not pkg or not exe:
        raise LaunchError(f"{where}: a node needs pkg and exec")
    if pkg == PACKAGE:
        if exe not in NODES:
            raise LaunchError(f"{where}: {PACKAGE} has no executable {exe!r} "
                              f"(known: {', '.join(sorted(NODES))})")
        cmd = [sys.executable, "-m", f"{PACKAGE}.ros.start", exe]
    else:
        path = shutil.which(exe)
        if path is None:
            print(f"[launch] skipping {pkg}/{exe}: not installed here", file=sys.stderr)
            return None
        cmd = [path]
    cmd += sub(str(entry.get("args", ""))).split()
    ros = []
    if entry.get("name"):
        ros += ["-r", f"__node:={sub(entry['name'])}"]
    namespace = sub(str(entry.get("namespace", ""))).strip("/")
    if namespace:  # empty: no namespace, as ros2 launch
        ros += ["-r", f"__ns:={_checked_namespace('/' + namespace, where)}"]
    for p in entry.get("param", []) or []:
        if "from" in p:
            path = sub(p["from"])
            if not Path(path).is_file():
                raise LaunchError(f"{where}: parameter file {path} not found")
            ros += ["--params-file", path]
        elif "name" in p and "value" in p:
            value = sub(p["value"])
            if isinstance(value, bool):
                value = str(value).lower()
            elif value == "":
                value = "''"  # an empty YAML string, not null
            ros += ["-p", f"{sub(p['name'])}:={value}"]
        else:
            raise LaunchError(f"{where}: a param entry needs `from` or `name` + `value`, got {p}")
    for r in entry.get("remap", []) or []:
        ros += ["-r", f"{sub(r['from'])}:={sub(r['to'])}"]
    return cmd + (["--ros-args"] + ros if ros else [])


def _checked_namespace(namespace: str, where: str) -> str:
    """``namespace`` if rcl accepts it, else one line saying why (rcl would refuse it in every node)."""
    from rclpy.exceptions import InvalidNamespaceException
    from rclpy.validate_namespace import validate_namespace

    try:
        validate_namespace(namespace)
    except InvalidNamespaceException as exc:
        reason = str(exc).splitlines()[0].split(": ", 1)[-1].rstrip(":")
        raise LaunchError(f"{where}: namespace {namespace!r} is not a valid ROS namespace ({reason})") from None
    return namespace


def parse(path: str | Path, overrides: dict[str, str] | None = None) -> list[Process]:
    """The processes a launch file starts, with its arguments set from ``overrides``."""
    path = Path(path)
    if not path.is_file():
        candidate = package_share() / "launch" / path.name
        if not candidate.is_file():
            raise LaunchError(f"launch file {path} not found (nor {candidate})")
        path = candidate
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise LaunchError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("launch"), list):
        raise LaunchError(f"{path}: expected a top-level `launch:` list")
    overrides = dict(overrides or {})
    args: dict[str, str] = {}
    procs = []
    for i, item in enumerate(doc["launch"]):
        if not isinstance(item, dict) or len(item) != 1:
            raise LaunchError(f"{path}: entry {i} must be a mapping with one action")
        (kind, entry), = item.items()
        where = f"{path.name} entry {i} ({kind})"
        if kind == "arg":
            name = entry["name"]
            if name in overrides:
                args[name] = overrides.pop(name)
            elif "default" in entry:
                args[name] = str(substitute(str(entry["default"]), args, where))
            else:
                raise LaunchError(f"{where}: argument {name!r} has no default; pass {name}:=VALUE")
            continue
        if "if" in entry and not _truthy(substitute(str(entry["if"]), args, where), where):
            continue
        if "unless" in entry and _truthy(substitute(str(entry["unless"]), args, where), where):
            continue
        if kind == "node":
            cmd = _node_command(entry, args, where)
            if cmd is not None:
                procs.append(Process(substitute(entry.get("name", entry["exec"]), args, where), cmd))
        elif kind == "executable":
            cmd = substitute(entry["cmd"], args, where).split()
            if shutil.which(cmd[0]) is None:
                print(f"[launch] skipping {cmd[0]}: not installed here", file=sys.stderr)
                continue
            procs.append(Process(entry.get("name", cmd[0]), cmd))
        else:
            raise LaunchError(f"{where}: unsupported action {kind!r} (arg, node, executable)")
    if overrides:
        raise LaunchError(f"{path.name}: unknown argument(s) {', '.join(overrides)}; declared: "
                          f"{', '.join(args) or 'none'}")
    return procs


DDS_PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")  # the second: deprecated


def dds_profile_env() -> dict[str, str]:
    """The environment for the nodes a launch starts: this one, with Fast DDS pointed at the
    package's config/fastdds.xml (shared-memory segments that hold whole camera images) unless a
    profiles file is set already (either variable). This process's own environment is left as it is."""
    env = dict(os.environ)
    if any(env.get(var) for var in DDS_PROFILE_VARS):
        return env
    path = package_share() / "config" / "fastdds.xml"
    if path.is_file():
        env[DDS_PROFILE_VARS[0]] = str(path)
    return env


class Launch:
    """Started processes of a launch file (environment: ``dds_profile_env``); ``stop()`` sends
    SIGINT, then SIGTERM, then SIGKILL."""

    def __init__(self, procs: list[Process], stdout=None):
        self.procs = procs
        env = dds_profile_env()
        for p in procs:
            p.popen = subprocess.Popen(p.cmd, stdout=stdout, stderr=subprocess.STDOUT if stdout else None, env=env)

    def poll(self) -> dict[str, int | None]:
        return {p.name: p.popen.poll() for p in self.procs}

    def stop(self, timeout_s: float = 10.0) -> dict[str, int | None]:
        for sig, wait in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            alive = [p for p in self.procs if p.popen.poll() is None]
            for p in alive:
                p.popen.send_signal(sig)
            deadline = time.monotonic() + wait
            while any(p.popen.poll() is None for p in alive) and time.monotonic() < deadline:
                time.sleep(0.05)
        return self.poll()


def parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if ":=" not in item:
            raise LaunchError(f"launch argument {item!r} must be name:=value")
        k, v = item.split(":=", 1)
        out[k] = v
    return out


def add_arguments(parser) -> None:
    parser.add_argument("file", help="launch file (a path, or a name in the package's launch/)")
    parser.add_argument("arguments", nargs="*", help="launch arguments, name:=value")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop everything after this many seconds (0 = run until Ctrl-C)")
    parser.add_argument("--print", action="store_true", help="print the commands and exit")


def run(args) -> int:
    try:
        procs = parse(args.file, parse_overrides(args.arguments))
    except LaunchError as exc:
        print(f"genpose launch: {exc}", file=sys.stderr)
        return 2
    if args.print:
        for p in procs:
            print(f"{p.name}: {' '.join(p.cmd)}")
        return 0
    # Ctrl-C stops the launch even where SIGINT arrives ignored (a background job of a
    # non-interactive shell); the caller's handler is restored at the end.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _supervise(procs, args)
    finally:
        signal.signal(signal.SIGINT, previous)


def _supervise(procs, args) -> int:
    launch = Launch(procs)
    print(f"[launch] started {', '.join(f'{p.name} (pid {p.popen.pid})' for p in procs)}", flush=True)
    start = time.monotonic()
    try:
        while any(code is None for code in launch.poll().values()):
            if args.duration and time.monotonic() - start > args.duration:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
    stopping = time.monotonic()
    codes = launch.stop()
    print(f"[launch] stopped in {time.monotonic() - stopping:.1f} s: "
          + ", ".join(f"{n} {c}" for n, c in codes.items()), flush=True)
    failed = {n: c for n, c in codes.items() if c not in (0, -signal.SIGINT, None)}
    for name, code in failed.items():
        print(f"[launch] {name} exited with {code}", file=sys.stderr)
    return 1 if failed else 0
