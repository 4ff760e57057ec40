from __future__ import annotations

import sys

from fcbench.plugins import Device, load


def test_local_device_push_exec_pull_info(tmp_path):
    cls = load("device", "local")
    dev = cls(workdir=str(tmp_path / "remote"))
    assert isinstance(dev, Device)
    src = tmp_path / "in.txt"
    src.write_text("hello")
    dev.push(str(src), "data/in.txt")
    rc, out, err = dev.exec([sys.executable, "-c", "print(open('data/in.txt').read().upper())"])
    assert (rc, out.strip()) == (0, "HELLO")
    rc, _, err = dev.exec([sys.executable, "-c", "open('out.txt','w').write('x')"])
    assert rc == 0, err
    dev.pull("out.txt", str(tmp_path / "back" / "out.txt"))
    assert (tmp_path / "back" / "out.txt").read_text() == "x"
    rc, _, err = dev.exec([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5)
    assert rc == 124 and "timed out" in err
    rc, _, _ = dev.exec(["definitely-not-a-command-xyz"])
    assert rc == 127
    info = dev.info()
    assert info["driver"] == "local" and info["cores"] >= 1 and info["cpu"]
    dev.cleanup()
    assert not (tmp_path / "remote").exists()
