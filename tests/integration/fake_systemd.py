"""A stand-in for systemd's D-Bus API on a private bus, for the process
collector's unit watches (PID 1 on the test machines is not systemd).

It owns org.freedesktop.systemd1 and serves what the collector uses:
Manager.Subscribe, and one unit object with org.freedesktop.DBus.Properties
GetAll/Get for the Unit and Service interfaces (ExecStart is
"/usr/bin/demo-web --port 8080"). It emits PropertiesChanged
the way systemd does, the Service interface's changes before the Unit's.
The test drives it with lines on stdin:

  kill SIGNAL       the main process was killed: MainPID 0, Result "signal",
                    ExecMainCode 2 (CLD_KILLED), ExecMainStatus SIGNAL,
                    ActiveState activating / SubState auto-restart
  exit CODE         the same for an exit: Result "exit-code", CLD_EXITED
  start PID         systemd started it again: NRestarts + 1 (when it had
                    ended), MainPID PID, ActiveState active / running
  stop              ActiveState failed / SubState failed

Prints "ready" once the name is owned. Usage: fake_systemd.py UNIT PID.
"""

import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

PROPS = "org.freedesktop.DBus.Properties"
UNIT = "org.freedesktop.systemd1.Unit"
SERVICE = "org.freedesktop.systemd1.Service"


def escape(name):
    # systemd's bus path escaping: every byte outside [A-Za-z0-9] as _XX
    return "".join(c if c.isalnum() and c.isascii() else "_%02x" % ord(c) for c in name)


class Manager(dbus.service.Object):
    @dbus.service.method("org.freedesktop.systemd1.Manager", in_signature="", out_signature="")
    def Subscribe(self):
        pass


class Unit(dbus.service.Object):
    def __init__(self, bus, name, pid):
        super().__init__(bus, "/org/freedesktop/systemd1/unit/" + escape(name))
        self.props = {
            UNIT: {"Id": dbus.String(name), "ActiveState": dbus.String("active"),
                   "SubState": dbus.String("running")},
            SERVICE: {"MainPID": dbus.UInt32(pid), "Result": dbus.String("success"),
                      "ExecMainCode": dbus.Int32(0), "ExecMainStatus": dbus.Int32(0),
                      "NRestarts": dbus.UInt32(0), "Type": dbus.String("simple"),
                      "ExecStart": dbus.Array([dbus.Struct(
                          ("/usr/bin/demo-web", dbus.Array(["/usr/bin/demo-web", "--port", "8080"], signature="s"),
                           False, dbus.UInt64(0), dbus.UInt64(0), dbus.UInt64(0), dbus.UInt64(0), dbus.UInt32(0),
                           dbus.Int32(0), dbus.Int32(0)), signature="sasbttttuii")], signature="(sasbttttuii)")},
        }
        self.ended = False

    @dbus.service.method(PROPS, in_signature="s", out_signature="a{sv}")
    def GetAll(self, iface):
        return dbus.Dictionary(self.props.get(iface, {}), signature="sv")

    @dbus.service.method(PROPS, in_signature="ss", out_signature="v")
    def Get(self, iface, prop):
        return self.props[iface][prop]

    @dbus.service.signal(PROPS, signature="sa{sv}as")
    def PropertiesChanged(self, iface, changed, invalidated):
        pass

    def change(self, service, unit):
        self.props[SERVICE].update(service)
        self.props[UNIT].update(unit)
        self.PropertiesChanged(SERVICE, dbus.Dictionary(service, signature="sv"), dbus.Array([], signature="s"))
        self.PropertiesChanged(UNIT, dbus.Dictionary(unit, signature="sv"), dbus.Array([], signature="s"))

    def command(self, line):
        words = line.split()
        if not words:
            return
        if words[0] in ("kill", "exit"):
            killed = words[0] == "kill"
            self.ended = True
            self.change({"MainPID": dbus.UInt32(0), "Result": dbus.String("signal" if killed else "exit-code"),
                         "ExecMainCode": dbus.Int32(2 if killed else 1),
                         "ExecMainStatus": dbus.Int32(int(words[1]))},
                        {"ActiveState": dbus.String("activating"), "SubState": dbus.String("auto-restart")})
        elif words[0] == "start":
            n = self.props[SERVICE]["NRestarts"] + (1 if self.ended else 0)
            self.ended = False
            self.change({"MainPID": dbus.UInt32(int(words[1])), "NRestarts": dbus.UInt32(n),
                         "ExecMainCode": dbus.Int32(0), "ExecMainStatus": dbus.Int32(0)},
                        {"ActiveState": dbus.String("active"), "SubState": dbus.String("running")})
        elif words[0] == "stop":
            self.change({}, {"ActiveState": dbus.String("failed"), "SubState": dbus.String("failed")})


def main():
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SessionBus()
    name = dbus.service.BusName("org.freedesktop.systemd1", bus)
    Manager(bus, "/org/freedesktop/systemd1")
    unit = Unit(bus, sys.argv[1], int(sys.argv[2]))
    loop = GLib.MainLoop()

    def on_stdin(fd, cond):
        line = sys.stdin.readline()
        if not line:
            loop.quit()
            return False
        unit.command(line)
        print("done", flush=True)
        return True

    GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, on_stdin)
    print("ready", flush=True)
    loop.run()
    del name


if __name__ == "__main__":
    main()
