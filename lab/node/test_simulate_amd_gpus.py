"""simulate-amd-gpus: the generated KFD topology and device list, its parameters, idempotence, and that the
project's own topology reader (plugins/module_utils/amd_topology.py) reads the generated tree correctly."""

import os
import pathlib
import stat
import subprocess
import sys
import uuid

import pytest

from plugins.module_utils import amd_topology
from tests.helpers.loading import load_file

HERE = pathlib.Path(__file__).resolve().parent
SCRIPT = HERE / "simulate-amd-gpus"

# node_show() in kfd_topology.c: every node prints these, GPU nodes add the second list before the last key.
KERNEL_NODE_KEYS = [
    "cpu_cores_count", "simd_count", "mem_banks_count", "caches_count", "io_links_count", "p2p_links_count",
    "cpu_core_id_base", "simd_id_base", "max_waves_per_simd", "lds_size_in_kb", "gds_size_in_kb", "num_gws",
    "wave_front_size", "array_count", "simd_arrays_per_engine", "cu_per_simd_array", "simd_per_cu",
    "max_slots_scratch_cu", "gfx_target_version", "vendor_id", "device_id", "location_id", "domain",
    "drm_render_minor", "hive_id", "num_sdma_engines", "num_sdma_xgmi_engines", "num_sdma_queues_per_engine",
    "num_cp_queues",
]
KERNEL_GPU_ONLY_KEYS = ["max_engine_clk_fcompute", "local_mem_size", "fw_version", "capability", "capability2",
                        "debug_prop", "sdma_fw_version", "unique_id", "num_xcc"]
KERNEL_IOLINK_KEYS = ["type", "version_major", "version_minor", "node_from", "node_to", "weight", "min_latency",
                      "max_latency", "min_bandwidth", "max_bandwidth", "recommended_transfer_size",
                      "recommended_sdma_engine_id_mask", "flags"]
KERNEL_MEM_KEYS = ["heap_type", "size_in_bytes", "flags", "width", "mem_clk_max"]


sim = load_file(SCRIPT, "simulate_amd_gpus")  # an executable without .py


def run_script(*args, check=True):
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def keys(text):
    return [line.split()[0] for line in text.splitlines()]


def facts_of(root: pathlib.Path):
    return amd_topology.collect_gpu_facts(str(root / "sys/class/kfd/kfd/topology"), str(root / "dev"))


def test_gpu_and_cpu_properties_carry_the_kernel_keys_in_order():
    files = sim.build_topology("mi300x", 8)
    gpu_keys = keys(files["nodes/2/properties"])
    assert gpu_keys == KERNEL_NODE_KEYS + KERNEL_GPU_ONLY_KEYS + ["max_engine_clk_ccompute"]
    assert keys(files["nodes/0/properties"]) == KERNEL_NODE_KEYS + ["max_engine_clk_ccompute"]
    assert keys(files["nodes/2/io_links/0/properties"]) == KERNEL_IOLINK_KEYS
    assert keys(files["nodes/2/mem_banks/0/properties"]) == KERNEL_MEM_KEYS
    assert files["nodes/2/name"] == "ip discovery\n" and files["nodes/0/gpu_id"] == "0\n"


def test_declared_counts_match_the_entries():
    files = sim.build_topology("mi325x", 8)
    for node in range(10):
        properties = amd_topology.parse_properties(files[f"nodes/{node}/properties"])
        for kind, key in (("mem_banks", "mem_banks_count"), ("caches", "caches_count"),
                          ("io_links", "io_links_count")):
            entries = {path.split("/")[3] for path in files if path.startswith(f"nodes/{node}/{kind}/")}
            assert len(entries) == properties[key], (node, kind)


@pytest.mark.parametrize("model, target, device_id, vram_mib, compute_units", [
    ("mi300x", 90402, 0x74A1, 196592, 304), ("mi325x", 90402, 0x74A5, 262128, 304),
    ("mi355x", 90500, 0x75A3, 294896, 256),
])
def test_model_parameters(model, target, device_id, vram_mib, compute_units):
    files = sim.build_topology(model, 8)
    gpu = amd_topology.parse_properties(files["nodes/9/properties"])
    assert gpu["gfx_target_version"] == target and gpu["device_id"] == device_id
    assert gpu["simd_count"] // gpu["simd_per_cu"] == compute_units
    bank = amd_topology.parse_properties(files["nodes/9/mem_banks/0/properties"])
    assert bank["heap_type"] == amd_topology.HEAP_TYPE_FB_PUBLIC and bank["size_in_bytes"] == vram_mib * 2**20


def test_device_list():
    nodes = sim.device_nodes(8)
    assert nodes[0] == ("kfd", sim.KFD_MAJOR, 0)
    assert [(path, major, minor) for path, major, minor in nodes if "render" in path] == [
        (f"dri/renderD{128 + index}", 226, 128 + index) for index in range(8)]
    assert [(path, minor) for path, _, minor in nodes if "card" in path] == [(f"dri/card{i}", i) for i in range(8)]
    assert sim.device_nodes(0) == [("kfd", sim.KFD_MAJOR, 0)]


def test_configuration_defaults_and_overrides(tmp_path):
    config = tmp_path / "simulated-gpu.conf"
    assert sim.choose(None, None, sim.read_config(str(config))) == ("mi300x", 8)
    config.write_text('# lab node 3\nSIM_GPU_MODEL="mi355x"\nSIM_GPU_COUNT=4\n')
    assert sim.choose(None, None, sim.read_config(str(config))) == ("mi355x", 4)
    assert sim.choose("mi325x", "7", sim.read_config(str(config))) == ("mi325x", 7)
    for model, count in (("mi210", None), (None, "9"), (None, "-1"), (None, "eight")):
        with pytest.raises(ValueError):
            sim.choose(model, count, {})


@pytest.mark.parametrize("model, count, targets, names, numa", [
    ("mi300x", 8, ["gfx942"], ["AMD Instinct MI300X"], [0, 0, 0, 0, 1, 1, 1, 1]),
    ("mi325x", 8, ["gfx942"], ["AMD Instinct MI325X"], [0, 0, 0, 0, 1, 1, 1, 1]),
    ("mi355x", 8, ["gfx950"], ["AMD Instinct MI355X"], [0, 0, 0, 0, 1, 1, 1, 1]),
    ("mi300x", 7, ["gfx942"], ["AMD Instinct MI300X"], [0, 0, 0, 0, 1, 1, 1]),
])
def test_generated_tree_reads_back_through_amd_topology(tmp_path, model, count, targets, names, numa):
    run_script("--root", str(tmp_path), "--model", model, "--count", str(count))
    facts = facts_of(tmp_path)
    assert facts["count"] == count and facts["cpu_node_count"] == 2
    assert facts["gfx_targets"] == targets and facts["marketing_names"] == names
    assert [gpu["numa_node"] for gpu in facts["gpus"]] == numa
    assert facts["kfd_present"] and facts["missing_render_nodes"] == []
    assert len(facts["card_nodes"]) == count
    assert len({gpu["pci_bdf"] for gpu in facts["gpus"]}) == count


def test_files_have_the_kernel_default_modes(tmp_path):
    run_script("--root", str(tmp_path), "--count", "2")
    for path in (tmp_path / "dev/kfd", tmp_path / "dev/dri/card1", tmp_path / "dev/dri/renderD129"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    properties = tmp_path / "sys/class/kfd/kfd/topology/nodes/3/properties"
    assert stat.S_IMODE(properties.stat().st_mode) == 0o444


def test_configuration_file_under_the_root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/simulated-gpu.conf").write_text("SIM_GPU_MODEL=mi355x\nSIM_GPU_COUNT=3\n")
    result = run_script("--root", str(tmp_path))
    assert "3 x AMD Instinct MI355X" in result.stdout
    assert facts_of(tmp_path)["gfx_targets"] == ["gfx950"]


def test_rerun_replaces_the_simulation_and_remove_undoes_it(tmp_path):
    run_script("--root", str(tmp_path), "--count", "8")
    run_script("--root", str(tmp_path), "--count", "7", "--model", "mi325x")
    facts = facts_of(tmp_path)
    assert facts["count"] == 7 and facts["marketing_names"] == ["AMD Instinct MI325X"]
    assert not (tmp_path / "dev/dri/renderD135").exists() and not (tmp_path / "dev/dri/card7").exists()
    assert not (tmp_path / "sys/class/kfd/kfd/topology/nodes/9").exists()
    run_script("--root", str(tmp_path), "--remove")
    assert not (tmp_path / "sys/class/kfd").exists() and not (tmp_path / "dev/kfd").exists()
    assert not (tmp_path / "dev/dri").exists()


def test_no_gpu_leaves_kfd_and_the_cpu_nodes(tmp_path):
    run_script("--root", str(tmp_path), "--count", "0")
    facts = facts_of(tmp_path)
    assert facts["kfd_present"] and facts["topology_present"]
    assert facts["count"] == 0 and facts["cpu_node_count"] == 2


def test_bad_count_changes_nothing(tmp_path):
    result = run_script("--root", str(tmp_path), "--count", "9", check=False)
    assert result.returncode == 2 and "outside 0..8" in result.stderr
    assert not (tmp_path / "dev").exists() and not (tmp_path / "sys").exists()


def test_mirror_keeps_symlinks_and_skips_files_and_kfd(tmp_path):
    source, target = tmp_path / "class", tmp_path / "mirror"
    (source / "net").mkdir(parents=True)
    (source / "net/lo").symlink_to("../../devices/virtual/net/lo")
    (source / "net/bonding_masters").write_text("")
    (source / "kfd").mkdir()
    (source / "kfd/kfd").symlink_to("../../devices/virtual/kfd/kfd")
    target.mkdir()
    sim.mirror_class_dir(str(source), str(target))
    assert os.readlink(target / "net/lo") == "../../devices/virtual/net/lo"
    assert not (target / "net/bonding_masters").exists() and not (target / "kfd").exists()


def mounts_under(path):
    return [point for point in sim.our_mounts() if point.startswith(str(path))]


def _can_mount(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    if os.geteuid() != 0:
        return False
    mounted = subprocess.run(["mount", "-t", "tmpfs", "probe", str(probe)], capture_output=True, timeout=30)
    if mounted.returncode == 0:
        subprocess.run(["umount", str(probe)], check=True, timeout=30)
    return mounted.returncode == 0


def test_system_mode_mounts_and_mknods_in_a_scratch_tree(tmp_path):
    """The boot path (tmpfs, mirror, read-only bind over the class dir, mknod) against a scratch tree."""
    if not _can_mount(tmp_path):
        pytest.skip("needs root with mount permission")
    sys_class = tmp_path / "sys/class"
    (sys_class / "net").mkdir(parents=True)
    (sys_class / "net/lo").symlink_to("../../devices/virtual/net/lo")
    layout = sim.Layout(str(sys_class), str(tmp_path / "dev"), str(tmp_path / "run" / uuid.uuid4().hex),
                        str(tmp_path / "none.conf"), True, True)
    try:
        sim.simulate(layout, "mi300x", 8)
        sim.simulate(layout, "mi355x", 2)
        assert len(mounts_under(tmp_path)) == 2, "a second run must replace, not stack, the mounts"
        assert os.readlink(sys_class / "net/lo") == "../../devices/virtual/net/lo"
        facts = amd_topology.collect_gpu_facts(layout.topology, layout.dev)
        assert facts["count"] == 2 and facts["gfx_targets"] == ["gfx950"]
        kfd = os.stat(tmp_path / "dev/kfd")
        assert stat.S_ISCHR(kfd.st_mode) and os.major(kfd.st_rdev) == sim.KFD_MAJOR
        render = os.stat(tmp_path / "dev/dri/renderD129")
        assert (os.major(render.st_rdev), os.minor(render.st_rdev)) == (226, 129)
        assert stat.S_IMODE(render.st_mode) == 0o600 and render.st_uid == 0 and render.st_gid == 0
        with pytest.raises(OSError):
            (sys_class / "written").write_text("x")
    finally:
        sim.remove(layout)
    assert mounts_under(tmp_path) == []
    assert not (sys_class / "kfd").exists() and (sys_class / "net/lo").is_symlink()
    assert not (tmp_path / "dev/kfd").exists()


def test_an_unsupported_architecture_can_be_simulated(tmp_path):
    """MI250X (gfx90a) exists only so that the preflight's unknown-architecture refusal can be shown."""
    assert sim.MODELS["mi250x"].gfx_target_version == 90010
    assert sim.choose("mi250x", "8", {}) == ("mi250x", 8)
