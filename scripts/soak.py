"""Soak run: the sim graph for a long while, with every node's memory and CPU and the detections'
latency sampled, so a leak or a slowdown over hours shows.

    .venv/bin/python scripts/soak.py --minutes 70 --out runs/soak -- frame_rate:=1.0
    .venv/bin/python scripts/soak.py --plot runs/soak          # redraw soak.png from samples.jsonl

Starts ``genpose launch sim.launch.yaml`` (the arguments after ``--`` go to it) in its own process
group, listens to ``/genpose/detections`` and every ``--every`` seconds writes one line to
``samples.jsonl``: each node's resident memory (MB), CPU seconds and threads (from /proc), and the
end-to-end latencies (detections arrival - frame stamp) of the detections since the last line.
At the end: ``soak.png`` (memory and latency over time) and a summary line per node.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def node_processes(pgid: int) -> dict:
    """{name: {rss_mb, cpu_s, threads}} of the processes of group ``pgid`` (names: the node
    executable, else the program)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid:
                continue
            cmd = [c for c in Path(f"/proc/{pid}/cmdline").read_text().split("\0") if c]
            name = next((Path(c).name for c in cmd if c.endswith("_node")), Path(cmd[min(1, len(cmd) - 1)]).name)
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            out[name] = {"rss_mb": round(rss / 2**20, 1), "cpu_s": (int(fields[11]) + int(fields[12])) / tick,
                         "threads": int(fields[17])}
        except (OSError, ValueError, IndexError):   # a process that ended meanwhile
            continue
    return out


def record(minutes: float, out: Path, every_s: float, launch_args: list[str]) -> int:
    import rclpy
    from vision_msgs.msg import Detection3DArray

    from genpose_ros.ros.qos import qos_from_name

    out.mkdir(parents=True, exist_ok=True)
    graph = subprocess.Popen([sys.executable, "-m", "genpose_ros.cli", "launch", "sim.launch.yaml", *launch_args],
                             stdout=open(out / "launch.log", "w"), stderr=subprocess.STDOUT, cwd=REPO,
                             start_new_session=True)
    rclpy.init(args=[sys.argv[0]])   # not the launch arguments: they are not ROS arguments of this node
    node = rclpy.create_node("soak_monitor")
    arrivals: list[tuple[float, float]] = []

    def on_detections(msg):
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        arrivals.append((time.time(), time.time() - stamp))

    node.create_subscription(Detection3DArray, "/genpose/detections", on_detections, qos_from_name("reliable", 10))
    t0 = last = time.time()
    try:
        with open(out / "samples.jsonl", "w") as log:
            while time.time() - t0 < minutes * 60 and graph.poll() is None:
                rclpy.spin_once(node, timeout_sec=0.5)
                if time.time() - last >= every_s:
                    last = time.time()
                    recent = [round(1e3 * lat, 1) for t, lat in arrivals if t > last - every_s]
                    log.write(json.dumps({"t": round(last - t0, 1), "nodes": node_processes(graph.pid),
                                          "messages": len(arrivals), "latency_ms": recent}) + "\n")
                    log.flush()
    except KeyboardInterrupt:
        pass
    finally:
        os.killpg(graph.pid, signal.SIGINT)
        try:
            graph.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(graph.pid, signal.SIGKILL)
        node.destroy_node()
        rclpy.try_shutdown()
    if graph.returncode not in (0, -signal.SIGINT):
        print(f"the graph stopped with {graph.returncode}: see {out / 'launch.log'}", file=sys.stderr)
    return summarise(out)


def summarise(out: Path) -> int:
    """soak.png and one line per node from ``out``/samples.jsonl."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    if len(rows) < 2:
        print(f"{out / 'samples.jsonl'}: fewer than two samples", file=sys.stderr)
        return 1
    minutes = np.array([r["t"] for r in rows]) / 60
    fig, (ax_mem, ax_lat) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for name in rows[-1]["nodes"]:
        rss = np.array([r["nodes"].get(name, {}).get("rss_mb", np.nan) for r in rows])
        ax_mem.plot(minutes, rss, label=name)
        k = max(1, len(rows) // 10)   # past start-up (models loaded, first frames)
        print(f"{name}: {rss[k]:.0f} MB at {minutes[k]:.1f} min -> {rss[-1]:.0f} MB at {minutes[-1]:.1f} min "
              f"({rss[-1] - rss[k]:+.0f} MB), peak {np.nanmax(rss):.0f} MB, CPU "
              f"{rows[-1]['nodes'][name]['cpu_s']:.0f} s")
    lat = [np.median(r["latency_ms"]) if r["latency_ms"] else np.nan for r in rows]
    ax_lat.plot(minutes, lat, color="k")
    ax_mem.set_ylabel("resident memory (MB)")
    ax_mem.legend(fontsize=8)
    ax_lat.set_ylabel("end-to-end latency (ms, median)")
    ax_lat.set_xlabel("minutes")
    fig.suptitle(f"soak: {rows[-1]['messages']} detections messages in {minutes[-1]:.0f} min")
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=80)
    print(f"{rows[-1]['messages']} detections messages; latency median {np.nanmedian(lat):.0f} ms; "
          f"wrote {out / 'soak.png'}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0, help="how long the graph runs")
    p.add_argument("--every", type=float, default=20.0, help="seconds between samples")
    p.add_argument("--out", default="runs/soak", help="output folder")
    p.add_argument("--plot", metavar="FOLDER", help="only redraw FOLDER/soak.png from its samples.jsonl")
    p.add_argument("launch_args", nargs="*", help="after --: arguments of sim.launch.yaml (name:=value)")
    args = p.parse_args(argv)
    if args.plot:
        return summarise(Path(args.plot))
    if not args.minutes > 0 or not args.every > 0:
        p.error("--minutes and --every must be > 0")
    return record(args.minutes, Path(args.out), args.every, args.launch_args)


if __name__ == "__main__":
    sys.exit(main())
