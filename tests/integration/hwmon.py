"""A fake hwmon tree for integration tests (stdlib only).

libsensors finds chips under /sys/class/hwmon. FakeHwmon builds a tree of
hwmonN directories in a temporary directory and gives a command prefix that
runs a program in a private mount namespace where a fresh tmpfs covers
/sys/class and the tree is bind-mounted onto /sys/class/hwmon:

    unshare -m --propagation private sh -c \
        'mount -t tmpfs weibao-hwmon /sys/class && mkdir /sys/class/hwmon &&
         mount --bind "$1" /sys/class/hwmon && shift && exec "$@"' sh TREE PROGRAM...

The host's /sys is untouched. Because the namespace sees the same directory,
writing a file from the outside (set_temp, set) changes what the program
reads on its next poll. Writes replace the file atomically (write a hidden
temporary, then rename), so a reader never sees a half-written value.
libsensors learns which attribute files exist when it starts (sensors_init):
create every file a test will need (e.g. temp1_fault) before starting the
program; only values may change afterwards.

Needs root (mount namespaces) and util-linux's unshare. skip_reason() says
why it cannot run; tests skip with that line, or fail under CI=true.

    hw = FakeHwmon(tmp_path)
    hw.add_chip("fakechip", [                    # hwmon0, shown as fakechip-virtual-0
        dict(label="CPU Temp", input=45.0, max=80.0, crit=95.0, crit_alarm=False),
        dict(label="Dead", input=127.0)])        # temp2
    proc = subprocess.Popen(hw.wrap(["build/weibao-agent", "--config", conf]))
    hw.set_temp("fakechip", 1, 99.0)             # seen on the next poll
    hw.add_temp("fakechip", 3, 40.0)             # only before the program starts
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_SCRIPT = (
    'mount -t tmpfs weibao-hwmon /sys/class && mkdir /sys/class/hwmon && '
    'mount --bind "$1" /sys/class/hwmon && shift && exec "$@"'
)


def skip_reason():
    """None when fake trees can be used here, else a one-line reason."""
    if os.geteuid() != 0:
        return "not root (a private mount namespace needs it)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) not installed"
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        return "unshare -m fails: " + (r.stderr.strip() or "exit %d" % r.returncode)
    return None


def _milli(celsius):
    return str(int(round(celsius * 1000)))


class FakeHwmon:
    """A fake /sys/class/hwmon under base_dir/hwmon (created if missing).

    Chips are addressed by the name given to add_chip ("testcpu") or by their
    directory ("hwmon0"); sensors by their number n (tempN_*)."""

    def __init__(self, base_dir):
        self.root = Path(base_dir) / "hwmon"
        self.root.mkdir(parents=True, exist_ok=True)
        self._dirs = {}  # chip name -> "hwmonN"

    def add_chip(self, name, sensors=()):
        """Adds hwmonN with driver name `name` and returns "hwmonN". libsensors
        shows it as "<name>-virtual-0" (no device link: a virtual chip).
        sensors: dicts with add_temp's keyword arguments, numbered 1, 2, ...;
        `input` may stand for input_c, `max` for max_c, `crit` for crit_c."""
        chip = "hwmon%d" % len(self._dirs)
        (self.root / chip).mkdir()
        self._dirs[name] = chip
        self.set(chip, "name", name)
        for n, spec in enumerate(sensors, 1):
            spec = dict(spec)
            for short, long in (("input", "input_c"), ("max", "max_c"), ("crit", "crit_c")):
                if short in spec:
                    spec[long] = spec.pop(short)
            self.add_temp(chip, n, **spec)
        return chip

    def _dir(self, chip):
        return self.root / self._dirs.get(chip, chip)

    def add_temp(self, chip, n, input_c, label=None, max_c=None, crit_c=None,
                 alarm=None, max_alarm=None, crit_alarm=None, fault=None):
        """Adds tempN_* files; temperatures in °C (written as millidegrees),
        flags as bools. Only arguments that are not None create a file."""
        self.set_temp(chip, n, input_c)
        if label is not None:
            self.set(chip, "temp%d_label" % n, label)
        for suffix, value in (("max", max_c), ("crit", crit_c)):
            if value is not None:
                self.set(chip, "temp%d_%s" % (n, suffix), _milli(value))
        for suffix, flag in (("alarm", alarm), ("max_alarm", max_alarm),
                             ("crit_alarm", crit_alarm), ("fault", fault)):
            if flag is not None:
                self.set_flag(chip, "temp%d_%s" % (n, suffix), flag)

    def set_temp(self, chip, n, celsius):
        """Sets tempN_input to celsius."""
        self.set(chip, "temp%d_input" % n, _milli(celsius))

    def set_flag(self, chip, attr, on):
        """Sets a 0/1 attribute such as temp1_crit_alarm."""
        self.set(chip, attr, "1" if on else "0")

    def set(self, chip, attr, text):
        """Replaces chip/attr with text (a newline is added) atomically."""
        d = self._dir(chip)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".new-")
        with os.fdopen(fd, "w") as f:
            f.write("%s\n" % text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, d / attr)

    def remove(self, chip, attr):
        """Deletes chip/attr: the next read of it fails."""
        (self._dir(chip) / attr).unlink()

    def command(self, argv):
        """The argv that runs argv inside the namespace with this tree."""
        return ["unshare", "-m", "--propagation", "private", "sh", "-c",
                _SCRIPT, "sh", str(self.root)] + list(argv)

    wrap = command


if __name__ == "__main__":
    # Self-check: `sensors` inside sees the tree and a change made outside.
    import sys
    import time

    reason = skip_reason()
    if reason:
        print("hwmon.py: skip: " + reason)
        sys.exit(77)
    with tempfile.TemporaryDirectory() as tmp:
        hw = FakeHwmon(tmp)
        hw.add_chip("fakechip", [dict(label="CPU Temp", input=45.0, max=80.0, crit=95.0, crit_alarm=False),
                                 dict(label="Dead", input=127.0)])
        p = subprocess.Popen(hw.wrap(["sh", "-c", "sensors; sleep 1; sensors"]),
                             stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        hw.set_temp("fakechip", 1, 99.5)
        out, _ = p.communicate(timeout=10)
        print(out)
        assert p.returncode == 0, p.returncode
        assert "fakechip-virtual-0" in out
        first, second = out.split("fakechip-virtual-0")[1:3]
        assert "CPU Temp:     +45.0°C  (high = +80.0°C, crit = +95.0°C)" in first, first
        assert "CPU Temp:     +99.5°C  (high = +80.0°C, crit = +95.0°C)" in second, second
        assert "+127.0°C" in first
        print("hwmon.py: ok")
