"""Point the CMake files exported by the ROS 2 wheels at this interpreter.

The wheels were built with a Python under /opt/python/cp311-cp311, and their exported CMake
files name its include and site-packages folders, so a rosidl build in a venv fails at the
generate step. This rewrites those two prefixes to this interpreter's paths, in place.
Usage: python scripts/fix_ros_wheel_cmake.py VENV
"""
import pathlib
import sys
import sysconfig

BUILD_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
BUILD_PURELIB = "/opt/python/cp311-cp311/lib/python3.11/site-packages"


def main(venv: str) -> int:
    paths = sysconfig.get_paths()
    replacements = {BUILD_INCLUDE: paths["include"], BUILD_PURELIB: paths["purelib"]}
    fixed = 0
    for cmake_file in pathlib.Path(venv, "share").rglob("*.cmake"):
        text = cmake_file.read_text(errors="surrogateescape")
        new = text
        for old, repl in replacements.items():
            new = new.replace(old, repl)
        if new != text:
            cmake_file.write_text(new, errors="surrogateescape")
            fixed += 1
    print(f"[setup] rewrote build-machine Python paths in {fixed} CMake files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
