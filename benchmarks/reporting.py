"""What every benchmark's report starts with, and where it goes."""

import datetime
import os
import platform
import sys


def command_line(script, argv=None):
    """How this run was started, e.g. `python benchmarks/x.py --smoke`."""
    arguments = sys.argv[1:] if argv is None else argv
    return " ".join(["python", f"benchmarks/{script}", *arguments])


def machine_line(script, argv=None):
    """`Command: ...; date; machine, CPUs, load average at the end.` (no full stop)."""
    return (
        f"Command: `{command_line(script, argv)}`; {datetime.date.today()}; "
        f"{platform.machine()}, {os.cpu_count()} logical CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )


def emit(text, output=None):
    """Prints `text` and appends it to the markdown file `output`, if given."""
    print(text)
    if output:
        with open(output, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
