"""`down` of an instance removes its own /dev/shm files and no other's: instance
"a" must not take those of "a-b" (a prefix glob did)."""

import dataclasses
import os
import shutil

from shared import host
from shared.config import load
from shared.ipc import endpoints
from tests.system.conftest import DEFAULT_CONFIG


def test_down_of_a_leaves_the_files_of_a_b(tmp_path):
    cfg = dataclasses.replace(load(DEFAULT_CONFIG), run_dir=str(tmp_path))
    a, ab = f"hf{os.getpid()}", f"hf{os.getpid()}-b"
    made = []
    try:
        for inst in (a, ab):
            open(endpoints.slab_path(inst), "w").close()
            os.mkdir(endpoints.state_dir(inst, "tcp"))
            made += [endpoints.slab_path(inst), endpoints.state_dir(inst, "tcp")]
        os.symlink("/nonexistent", endpoints.state_dir(a, "socket_server"))
        made.append(endpoints.state_dir(a, "socket_server"))
        assert sorted(host.leftovers(cfg, a)) == sorted(made[:2] + made[4:])
        host.remove_instance_files(cfg, a)
        assert host.leftovers(cfg, a) == []
        assert os.path.exists(endpoints.slab_path(ab)) and os.path.isdir(endpoints.state_dir(ab, "tcp"))
    finally:
        for p in made:
            if os.path.islink(p) or os.path.isfile(p):
                os.unlink(p)
            elif os.path.isdir(p):
                shutil.rmtree(p)
